"""A study made before the modules moved (study/*.py into study/tuning/, ...) still resumes.

Tune pickles the searcher, the scheduler, the recorder, the checkpoint keeper and the trial-folder
function into a study's ``tuner.pkl`` and search state by their module paths; ``study.MOVED`` keeps the
old paths importing. The end-to-end test writes those files as the old code did (every pickled object
under its old module path) and with the old ``best.loss.*`` column names, then resumes the study."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import pandas as pd
from ray import cloudpickle

import study
from study.run import main as run_main
from study.store.trials import read_trials
from tests.conftest import TINY

# what Tune pickles into a study folder, by the name the old code gave it
PICKLED = {
    "study.runner": "trial_folder",
    "study.searchers": "PerMethodSearch",
    "study.schedulers": "PerMethodASHA",
    "study.recorder": "ResultsRecorder",
    "study.keep_best": "KeepBestCheckpoints",
}


def test_every_old_path_imports_the_module_that_replaced_it():
    assert set(PICKLED) == set(study.MOVED)
    for old, new in study.MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new)
        name = PICKLED[old]
        # the GLOBAL opcode a pickle of the old code holds: "c<module>\n<name>\n"
        assert pickle.loads(f"c{old}\n{name}\n.".encode()) is getattr(importlib.import_module(new), name)


def write_as_before_the_move(study_dir: Path, monkeypatch) -> None:
    """Re-write the study's pickles with every moved object under its old module path, and trials.parquet
    with the column names of before ``at_best.*``."""
    for old, new in study.MOVED.items():
        importlib.import_module(old)  # cloudpickle writes a reference only to a module in sys.modules
        monkeypatch.setattr(getattr(importlib.import_module(new), PICKLED[old]), "__module__", old)
    files = [*study_dir.glob("*.pkl"), *study_dir.glob("search_gen_state-*.json")]
    for path in files:
        with path.open("rb") as f:
            state = cloudpickle.load(f)
        with path.open("wb") as f:
            cloudpickle.dump(state, f)
    assert any(old.encode() in p.read_bytes() for p in files for old in study.MOVED)  # the old paths are in
    monkeypatch.undo()
    trials = pd.read_parquet(study_dir / "trials.parquet")
    trials.rename(columns={c: "best." + c.removeprefix("at_best.") for c in trials if c.startswith("at_best.")}) \
        .to_parquet(study_dir / "trials.parquet")


def test_a_study_made_before_the_move_resumes(ray_cluster, tmp_path, monkeypatch):
    args = ["--storage", str(tmp_path), "--name", "old", *TINY, "--space", "gradnorm", "--samples", "1",
            "--epochs", "1"]
    assert run_main(args) == 0
    write_as_before_the_move(tmp_path / "old", monkeypatch)
    assert "best.loss.det" in pd.read_parquet(tmp_path / "old" / "trials.parquet")

    # the search is restored from the old pickles; the re-run phase then adds a trial to the old trials.parquet
    assert run_main([*args, "--resume", "--repeat-best", "1", "--seeds", "1"]) == 0
    on_disk = pd.read_parquet(tmp_path / "old" / "trials.parquet")
    assert len(on_disk) == 2 and set(on_disk["status"]) == {"finished"}
    assert "at_best.loss.det" in on_disk and not [c for c in on_disk if c.startswith("best.loss.")]
    assert on_disk["at_best.loss.det"].notna().all()  # the old row's value came across under its new name
    assert read_trials(tmp_path / "old").columns.equals(on_disk.columns)
