"""``python -m study.publish``: a published study carries no path, host name or address of the machine that ran it,
renders as the full report, publishes to the same files twice, and a path the rewrite misses stops it with one line.

The real study is a tiny two-fold study on a data set written to disk (a data.yaml and its folder, so there is a data
folder to leak); the committed docs/results/verdict-5x2-160 is checked for paths and rendered too.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from study.analysis.loading import DERIVED_NOTE, load_study
from study.analysis.report import build_report
from study.cli import run_cli
from study.publish import Scrubber, find_machine_strings
from study.publish import main as publish_main
from tests.published_runs import RUNS, PublishedRun, each_run

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = RUNS[0].folder  # the verdict run, whose trials.parquet was not kept
ROOTED = re.compile(r"(?:^|[\s'\"=:(\[,])/\w")  # a /-rooted path anywhere in a string, on any machine


def write_dataset(root: Path, patients: int = 12, frames: int = 6, size: int = 64) -> Path:
    """A joint YOLO data set on disk: synthetic frames of ``patients`` patients (every view in each), one folder per
    split, file names ``pNN-cK-0.png`` (the patient before the first dash)."""
    from PIL import Image

    from trainables.data.synthetic import NAMES, VIEW_NAMES, draw_frames

    images, boxes, _ = draw_frames(np.random.default_rng(0), patients * frames, size)
    for i in range(patients * frames):
        split = ("train", "valid", "test")[(i // frames) % 3]
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        stem = f"p{i // frames:02d}-c{i % frames}-0"
        Image.fromarray(images[i].transpose(1, 2, 0)).save(root / split / "images" / f"{stem}.png")
        rows = [f"{int(c)} {(x1 + x2) / 2 / size:.5f} {(y1 + y2) / 2 / size:.5f} {(x2 - x1) / size:.5f} "
                f"{(y2 - y1) / size:.5f}" for _, c, x1, y1, x2, y2 in boxes[boxes[:, 0] == i]]
        view = i % len(VIEW_NAMES)
        (root / split / "labels" / f"{stem}.txt").write_text("\n".join([*rows, str(view)]) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: train/images\nval: valid/images\ntest: test/images\n"
                                    f"names: {list(NAMES)}\ncls_names: {list(VIEW_NAMES)}\n")
    return root / "data.yaml"


def strings(folder: Path) -> list[tuple[str, str]]:
    """(where, text) for every string of every file in ``folder``: Parquet cells, manifest keys and values, the text
    cells of optuna.db."""
    out: list[tuple[str, str]] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
            out += [(f"{path.name}:{c}", v) for c in table.columns for v in table[c] if isinstance(v, str)]
            out += [(path.name, str(c)) for c in table.columns]
        elif path.name == "manifest.json":  # (Tune's own *.json state files are pickles)
            out += [(path.name, s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', path.read_text())]
        elif path.suffix == ".db":
            with sqlite3.connect(path) as db:
                for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    out += [(f"{path.name}:{t}", v) for row in db.execute(f'SELECT * FROM "{t}"') for v in row
                            if isinstance(v, str)]
    return out


def leaks(folder: Path, needles: list[str]) -> list[tuple[str, str]]:
    host = socket.gethostname()
    found = [(w, s) for w, s in strings(folder) if any(n in s for n in needles)]
    found += [(w, s) for w, s in strings(folder) if re.search(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", s)]
    raw = [p.name for p in folder.rglob("*") if p.is_file() and any(n.encode() in p.read_bytes() for n in needles)]
    return found + [("bytes", r) for r in raw]


@pytest.fixture(scope="module")
def study(ray_cluster, tmp_path_factory) -> tuple[Path, Path]:
    """A real two-fold study of shared/gradnorm vs dual (one trial searched per method and fold, one re-run each),
    on a data set in its own folder: (the study folder, the data.yaml)."""
    from study.run import main as run_main

    tmp = tmp_path_factory.mktemp("publish")
    data = write_dataset(tmp / "echo-data")
    argv = ["--storage", str(tmp / "results"), "--name", "tiny", "--data", str(data), "--imgsz", "64",
            "--set", "train.interference_batches=1", "--set", "train.bn_recalibration_batches=1",
            "--space", "compare", "--methods", "shared/gradnorm,dual", "--samples", "2", "--epochs", "1",
            "--folds", "2", "--seeds", "1", "--split", "patient"]
    assert run_main(argv) == 0
    return tmp / "results" / "tiny", data


@pytest.mark.slow
def test_a_published_study_names_no_path_or_host_of_the_machine(study, tmp_path, capsys):
    folder, data = study
    needles = [str(folder.parent), str(data.parent), str(Path.home()) + "/"]
    assert leaks(folder, needles), "the study itself should name its machine, or this test tests nothing"
    out = tmp_path / "published"
    assert run_cli(publish_main, [str(folder), str(out)]) == 0, capsys.readouterr().err
    assert leaks(out, needles) == []
    assert find_machine_strings(out, needles) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "trials.parquet", "epochs.parquet", "test_runs.parquet", "costs.parquet",
         "headline.parquet", "verdict.parquet", "folds.parquet", "optuna.db"])  # no checkpoints or Tune state;
    # the folds' optuna.db pooled into one, each Optuna study named fold-k/<method>

    # what the paths became: relative to the study, the data set by its folder, the storage and Python named
    runs = pd.read_parquet(out / "test_runs.parquet")
    assert all(c.startswith("fold-") and c.endswith("checkpoint.pt") for c in runs["checkpoint"])
    assert set(runs["data"]) == {"echo-data/data.yaml"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"][:3] == ["python", "-m", "study.run"]
    argv = manifest["runs"][0]["argv"]
    assert argv[argv.index("--data") + 1] == "echo-data/data.yaml" and manifest["settings"]["storage"] == "<storage>"
    assert {"cost.host"} & set(pd.read_parquet(out / "costs.parquet").columns) == set()
    assert manifest["published"]["dropped_columns"]["trials.parquet"] == ["node_host", "node_ip"]
    # the folds' trials and epochs pooled, each row with its fold
    trials = pd.read_parquet(out / "trials.parquet")
    assert sorted(trials["fold"].unique()) == [0, 1] and len(trials) == sum(
        len(pd.read_parquet(folder / f"fold-{k}" / "trials.parquet")) for k in (0, 1))
    assert sorted(pd.read_parquet(out / "epochs.parquet")["fold"].unique()) == [0, 1]

    # the report renders from the published folder alone, as it does from the study
    published, original = load_study(out), load_study(folder)
    assert len(published.trials) == len(original.trials) and published.notes == original.notes
    page = build_report(published).html
    assert str(folder.parent) not in page and str(data.parent) not in page
    assert 'id="verdict"' in page and "echo-data/data.yaml" in page

    # idempotent: publishing the published folder writes the same bytes
    again = tmp_path / "again"
    assert run_cli(publish_main, [str(out), str(again)]) == 0
    for path in out.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.slow
def test_publishing_over_an_earlier_publication_replaces_it(study, tmp_path):
    folder, _ = study
    out = tmp_path / "pub"
    assert run_cli(publish_main, [str(folder), str(out)]) == 0
    (out / "stale.txt").write_text("from before")
    assert run_cli(publish_main, [str(folder), str(out)]) == 0
    assert not (out / "stale.txt").exists() and (out / "manifest.json").is_file()


def copy_committed(tmp_path: Path) -> Path:
    folder = tmp_path / COMMITTED.name
    shutil.copytree(COMMITTED, folder)
    return folder


@pytest.mark.parametrize("where", ["parquet", "manifest"])
def test_a_path_the_rewrite_misses_is_one_line_and_nothing_is_written(tmp_path, capsys, where):
    folder = copy_committed(tmp_path)
    planted = "/etc/hosts.d/run.log"  # a path of this machine (/etc exists) where no rule looks
    if where == "parquet":  # a column that is not a message: left as is, so the check must find it
        table = pq.read_table(folder / "folds.parquet")
        pq.write_table(table.append_column("note", pa.array([planted] * len(table))), folder / "folds.parquet")
    else:  # every manifest value is rewritten; a key is not
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["versions"][planted] = "1.0"
        (folder / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    assert run_cli(publish_main, [str(folder), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert ("folds.parquet column note" if where == "parquet" else "manifest.json versions") in err[0], err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_messages_lose_their_paths_and_host_names():
    scrub = Scrubber(ROOT / "results" / "s", {"settings": {"storage": "/elsewhere/results", "name": "s"}},
                     {"gpu-node-7", "10.1.2.3"}, {"/data/sets/echo/data.yaml"})
    text = (f'Traceback: File "{ROOT}/trainables/engine.py", line 3; /elsewhere/results/s/trial_1/x.pt; '
            "/elsewhere/results/s-repeats/trial_2; /data/sets/echo/data.yaml on gpu-node-7 (10.1.2.3)")
    assert scrub.text(text) == ('Traceback: File "trainables/engine.py", line 3; trial_1/x.pt; ../s-repeats/trial_2; '
                                "echo/data.yaml on <host> (<host>)")
    assert scrub.text(text) == scrub.text(scrub.text(text))
    if Path("/usr").is_dir():  # another absolute path of this machine, in a message: its name only
        assert scrub.text("cannot open /usr/lib/libfoo.so: gone", free=True) == "cannot open <path>/libfoo.so: gone"
    assert scrub.value("model.weights", "/elsewhere/w/yolov5n.pt") == "yolov5n.pt"


@each_run
def test_a_committed_run_holds_no_path_and_renders(tmp_path, capsys, run: PublishedRun):
    committed = run.folder
    rooted = [(w, s) for w, s in strings(committed) if ROOTED.search(s)]
    assert rooted == [], rooted[:5]
    assert find_machine_strings(committed) == []
    assert not list(committed.glob("**/*.pt")) and not list(committed.glob("**/*.pkl"))
    manifest = json.loads((committed / "manifest.json").read_text())
    assert manifest["published"]["command"][:3] == ["python", "-m", "study.publish"]
    # publishing it again changes nothing
    again = tmp_path / "again"
    assert run_cli(publish_main, [str(committed), str(again)]) == 0
    for path in committed.iterdir():
        if path.name == "figures":  # study.analyze --format png's (the README's frontier), not study.publish's
            continue
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name

    from study.analyze import main as analyze_main

    out = tmp_path / "report.html"
    assert run_cli(analyze_main, [str(committed), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    if not (committed / "trials.parquet").exists():  # the trial rows come from the re-runs, and the report says so
        assert DERIVED_NOTE in err
    page = out.read_text()
    assert 'id="verdict"' in page and "regurgitation/data.yaml" in page


def test_trial_rows_derived_from_the_reruns_hold_only_what_the_files_say():
    study = load_study(COMMITTED)
    runs = pd.read_parquet(COMMITTED / "test_runs.parquet")
    epochs = pd.read_parquet(COMMITTED / "epochs.parquet")
    trials = study.trials
    assert len(trials) == len(runs) and trials["is_repeat"].all() and DERIVED_NOTE in study.notes
    assert list(trials["method"]) == list(runs["method"]) and list(trials["train.seed"]) == list(runs["train.seed"])
    for _, row in trials.iterrows():  # the best epoch's validation scores, from that re-run's own epochs
        mine = epochs[(epochs["trial_id"] == row["trial_id"]) & (epochs["fold"] == row["fold"])]
        best = mine[mine["epoch"] == row["best_epoch"]].iloc[0]
        assert row["best.val.map50"] == best["val.map50"] and row["epochs_run"] == len(mine)
    assert trials["optim.lr"].isna().all() if "optim.lr" in trials else True  # no hyperparameter made up
