"""The search phase: one Tune experiment in the study folder, Optuna suggesting (one search per method).

This room (study/tuning/) is the only place that builds Tuner, TuneConfig, RunConfig, Optuna
searchers and schedulers; ``run_search`` starts the search or, with ``--resume``, restores it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from search_spaces import registry as spaces
from study.store.folder import OPTUNA_DB
from study.store.selection import EPOCH_SCORE
from study.tuning.interrupt import HearInterrupt, fit
from study.tuning.keep_checkpoints import KeepBestCheckpoints
from study.tuning.recorder import ResultsRecorder
from study.tuning.schedulers import PerMethodASHA
from study.tuning.searchers import PerMethodSearch, storage_url
from study.tuning.settings import StudySettings, methods_of

# Every trial asks for the same resources, so a finished trial's worker process takes the next trial: no
# new process, no second import of torch, no second fetch of the dataset (docs/benchmarks.md#worker-reuse).
# Results are unchanged (every run re-seeds per epoch), and the peak-memory window starts from a trimmed
# heap (trainables/metrics/efficiency.py) so reuse does not inflate it.
REUSE_WORKERS = True
MAX_RETRIES = 2  # a trial whose worker or node dies starts again from its last checkpoint, at most twice


def run_search(s: StudySettings, study_dir: Path, trainable: Any, base: dict[str, Any],
               objectives: list[tuple[str, str]]) -> int:
    """Run (or, with ``--resume``, restore) the study's search; returns the number of trials Tune saw error."""
    recorder = ResultsRecorder(study_dir, s.space)
    if s.resume and Tuner.can_restore(str(study_dir)):
        print(f"search: resuming {study_dir.name} from its saved state", flush=True)
        tuner = Tuner.restore(str(study_dir), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = Tuner(trainable, tune_config=tune_config(s, base, objectives, study_dir),
                      run_config=run_config(s, study_dir, recorder))
    return fit(tuner).num_errors  # Ctrl-C: KeyboardInterrupt once Tune saved the search (tuning/interrupt.py)


def tune_config(s: StudySettings, base: dict[str, Any], objectives: list[tuple[str, str]],
                study_dir: Path) -> TuneConfig:
    """One independent Optuna study per method, all in STORAGE/NAME/optuna.db (study/tuning/searchers.py)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the recorder prints one line per epoch already
    searcher = PerMethodSearch(s.space, base, objectives, s.samples, seed=s.seed,
                               storage=storage_url(study_dir / OPTUNA_DB), methods=methods_of(s))
    limited = ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent)
    print(searcher.plan(), flush=True)
    if s.scheduler == "asha":  # one ASHA per method: a trial is ranked only against its own method's
        metric, mode = objectives[0]
        names = [spaces.method_label(m) for m in methods_of(s)]
        scheduler = PerMethodASHA(names, time_attr="epoch", metric=metric, mode=mode, max_t=s.epochs,
                                  grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    return TuneConfig(search_alg=limited, scheduler=scheduler, num_samples=s.samples, reuse_actors=REUSE_WORKERS,
                      trial_dirname_creator=trial_folder)


def trial_folder(trial: Any) -> str:
    """A trial's folder name: ``trial_<id>`` (Tune's default spells out the whole config, 150+ characters;
    the config is in trials.parquet)."""
    return f"trial_{trial.trial_id}"


def phase_of(experiment_dir: Path, recorder: ResultsRecorder) -> str:
    """The ``mtl.phase`` of the trials of a Tune experiment (one of mlflow_study.PHASES): the study's own folder
    holds its search, ``NAME-repeats`` its --repeat-best re-runs (study/tuning/repeats.py)."""
    from study.tracking.mlflow_study import RERUN, SEARCH

    return SEARCH if experiment_dir == recorder.study_dir else RERUN


def run_config(s: StudySettings, experiment_dir: Path, recorder: ResultsRecorder) -> RunConfig:
    """Where an experiment lives, what is called back, how failures are retried and checkpoints kept."""
    callbacks = [recorder, KeepBestCheckpoints(), HearInterrupt()]
    if s.mlflow:  # each trial a child run of the study's (after the recorder: it reads the trial's row)
        from study.tracking.mlflow_study import read_parent
        from study.tuning.mlflow_trials import MlflowTrials

        callbacks.append(MlflowTrials(read_parent(recorder.study_dir), recorder, phase_of(experiment_dir, recorder)))
    return RunConfig(
        name=experiment_dir.name,
        storage_path=str(experiment_dir.parent),
        callbacks=callbacks,
        # only a dead worker or node raises out of a trial (train_trial records every deterministic failure),
        # so retrying from the last checkpoint, on any node with room, is never a blind retry of the same error
        failure_config=FailureConfig(max_failures=MAX_RETRIES),
        # Tune keeps every checkpoint while a trial runs (deleting one a later snapshot may still point at
        # broke --resume after a SIGKILL); KeepBestCheckpoints prunes a completed trial to its best epoch's
        # checkpoint and its latest. The score attribute only orders Tune's own view of them.
        checkpoint_config=CheckpointConfig(num_to_keep=None, checkpoint_score_attribute=EPOCH_SCORE,
                                           checkpoint_score_order="max"),
        verbose=s.verbose,
    )
