"""The re-run phase: each method's chosen configurations trained again with N seeds (``--repeat-best K``).

A second Tune experiment beside the study (``NAME-repeats``, study/store/folder.py); each re-run's
``meta.repeat_of`` names the trial (or ``default:<method>``) it repeats, and its rows join the study's
``trials.parquet``. A resumed study restores that experiment, so the re-runs it finished stay and none
is started twice.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ray.tune import TuneConfig, Tuner
from ray.tune.search.basic_variant import BasicVariantGenerator

from study.store.folder import repeats_dir
from study.store.trials import row_config
from study.tuning.interrupt import fit
from study.tuning.recorder import ResultsRecorder
from study.tuning.search import REUSE_WORKERS, run_config, trial_folder
from study.tuning.settings import StudySettings
from trainables.wording import counted

SEED_OFFSET = 1000  # re-run seeds start here, away from the search's own train.seed


def run_repeats(s: StudySettings, study_dir: Path, trainable: Any, chosen: Any) -> None:
    """Re-run each row of ``chosen`` (a trials frame) with ``s.seeds`` seeds."""
    folder = repeats_dir(study_dir)
    recorder = ResultsRecorder(study_dir, s.space)
    if Tuner.can_restore(str(folder)):
        print(f"repeat-best: resuming {folder.name}", flush=True)
        fit(Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=True))
        return
    points = []
    for _, row in chosen.iterrows():
        config = row_config(row)
        for seed in range(s.seeds):
            points.append({**config, "train.seed": s.seed + SEED_OFFSET + seed, "meta.repeat_of": row["trial_id"]})
    if not points:
        print("repeat-best: no finished trial to repeat", file=sys.stderr)
        return
    per = "per method" if s.samples else "per method: its default"
    print(f"repeat-best: {counted(len(chosen), 'config')} ({max(s.repeat_best, 1)} {per}) x "
          f"{counted(s.seeds, 'seed')}", flush=True)
    tuner = Tuner(
        trainable,
        # Tune wants every key a point sets declared in the param space; a point leaves the keys of other
        # methods' balancers at None (the config drops them, the Parquet row reads NaN there)
        param_space=dict.fromkeys(k for p in points for k in p),
        tune_config=TuneConfig(search_alg=BasicVariantGenerator(points_to_evaluate=points,
                                                                max_concurrent=s.max_concurrent),
                               num_samples=len(points), reuse_actors=REUSE_WORKERS,
                               trial_dirname_creator=trial_folder),
        run_config=run_config(s, folder, recorder),
    )
    fit(tuner)  # Ctrl-C: KeyboardInterrupt once Tune saved the re-runs (tuning/interrupt.py)
