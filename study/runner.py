"""The study on Ray Tune with Optuna: the only module that builds Tuner, TuneConfig, RunConfig,
OptunaSearch and schedulers.

One study = one folder ``STORAGE/NAME`` holding Tune's experiment state (trial folders and
checkpoints) and this tool's ``trials.parquet``, ``epochs.parquet`` and ``manifest.json``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator

from search_spaces import registry as spaces
from study.analysis.headline import HEADLINE_FILE
from study.best import EPOCH_SCORE, best_trials
from study.cli import UsageError
from study.cluster import AUTH_HINT, check_nodes, describe
from study.evaluate import repeats_dir
from study.keep_best import KeepBestCheckpoints
from study.manifest import write_manifest
from study.recorder import ResultsRecorder
from study.results import read_trials, row_config
from study.schedulers import PerMethodASHA
from study.searchers import PerMethodSearch, storage_url
from trainables.config import TrialConfig, fit_balancer
from trainables.data.loader import load_data
from trainables.tune import train_trial

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
OPTUNA_DB = "optuna.db"  # the study's Optuna storage: optuna-dashboard sqlite:///STORAGE/NAME/optuna.db
MIN_FREE_BYTES = 512 * 2**20
# Every trial asks for the same resources, so a finished trial's worker process takes the next trial: no
# new process, no second import of torch, no second fetch of the dataset. Measured (6 trials x 2 epochs,
# 64 px, 2 slots, loaded machine): 19-35 s between one trial's end and the next one's start without,
# 0.4-1.3 s with; the results are bit-identical (every run re-seeds per epoch), and the peak-memory
# window starts from a trimmed heap (trainables/metrics/efficiency.py) so reuse does not inflate it.
REUSE_WORKERS = True
DEFAULT_CONFIG = "default:"  # --samples 0: a method's default configuration stands for its chosen trial


@dataclass
class StudySettings:
    space: str = "gradnorm"
    samples: int = 6
    epochs: int = 5
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    seed: int = 0
    objective: str | None = None  # "single" | "multi" | None (the space's default)
    scheduler: str = "fifo"  # "fifo" | "asha"
    name: str | None = None
    storage: str = "results"
    address: str | None = None
    resume: bool = False
    overwrite: bool = False
    repeat_best: int = 0
    seeds: int = 3
    test: bool = False  # score every --repeat-best re-run on the test split; write headline.parquet
    costs: bool = False  # measure each method's chosen configuration alone (implied by test)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    folds: int = 0  # >= 2: K outer patient folds, each a complete study (study/folds.py)
    methods: list[str] | None = None  # method labels (shared/gradnorm, dual, ...); None: all of the space's
    config: dict[str, Any] = field(default_factory=dict)  # base config keys from the command line
    argv: list[str] = field(default_factory=list)
    verbose: int = 0  # Tune's own console tables; the recorder prints one line per epoch instead


def run_study(s: StudySettings) -> Path:
    """Run (or resume) a study; returns its folder. Raises UsageError for anything the user can fix."""
    objectives = _check(s)
    study_dir = _prepare_folder(s)
    base = spaces.base_config(s.space, s.config, _methods(s))
    search = f"{s.samples} trials" if s.samples else "no search (each method's default configuration)"
    print(f"study {study_dir.name}: space {s.space}, {search} x {s.epochs} epochs, objective "
          f"{', '.join(f'{m} ({mode})' for m, mode in objectives)}", flush=True)

    t0 = time.perf_counter()
    data = load_data(TrialConfig.from_flat(base).data, seed=s.seed, progress=True)
    print(f"data: {data.images.shape[0]} images at {data.imgsz} px, {data.images.nbytes / 2**20:.1f} MiB decoded, "
          f"splits {', '.join(f'{k}={len(v)}' for k, v in data.splits.items())} ({time.perf_counter() - t0:.1f}s)",
          flush=True)
    if s.test and len(data.splits.get("test", ())) == 0:
        have = [k for k, v in data.splits.items() if len(v)]
        raise UsageError(f"--test: {base['data.source']} has no 'test' images (it has {have}); give the data.yaml a "
                         "'test:' folder or use --split patient")
    _start_ray(s)
    if s.address:  # every node must import the project and see the study folder: checked before any trial
        for line in describe(check_nodes(study_dir)):
            print(line, flush=True)
    started = time.time()
    if s.folds:
        from study.folds import run_folds

        run_folds(s, study_dir, base, data, objectives)
        return study_dir
    errors = run_phases(s, study_dir, base, data, objectives)
    write_manifest(study_dir, s, base, data.fingerprint, started)
    _summary(study_dir, objectives, wall_s=time.time() - started, errors=errors)
    return study_dir


def run_phases(s: StudySettings, study_dir: Path, base: dict[str, Any], data: Any,
               objectives: list[tuple[str, str]]) -> int:
    """One complete study in ``study_dir``: the search (none with ``--samples 0``), the re-runs of each
    method's chosen configurations, the isolated costs and the held-out scores. Every phase resumes
    from what an earlier run of the same study left. Returns the number of trials Tune saw error."""
    trainable = tune.with_resources(  # trials never see the test split: it is not in what they are handed
        tune.with_parameters(train_trial, data=without_test(data)), {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
    )
    errors = 0
    if s.samples:
        recorder = ResultsRecorder(study_dir, s.space)
        if s.resume and Tuner.can_restore(str(study_dir)):
            tuner = Tuner.restore(str(study_dir), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = Tuner(trainable, tune_config=_tune_config(s, base, objectives, study_dir),
                          run_config=_run_config(s, study_dir, recorder))
        errors = tuner.fit().num_errors
    chosen = _chosen(s, study_dir, base, objectives)
    if s.repeat_best > 0:
        _repeat_best(s, study_dir, trainable, chosen)
    if s.test or s.costs:
        _heldout(s, study_dir, data, chosen)
    return errors


def without_test(data: Any) -> Any:
    """``data`` with an empty test split: what trials are handed (their epochs are chosen on val only)."""
    import dataclasses

    import numpy as np

    return dataclasses.replace(data, splits={**data.splits, "test": np.zeros(0, np.int64)})


def _chosen(s: StudySettings, study_dir: Path, base: dict[str, Any], objectives: list[tuple[str, str]]):
    """Each method's chosen configurations: its K best searched trials (study/best.py), or with
    ``--samples 0`` its default configuration (``trial_id`` ``default:<method>``)."""
    import pandas as pd

    if s.samples:
        metric, mode = objectives[0]
        return best_trials(read_trials(study_dir), f"best.{metric}", mode, k=max(s.repeat_best, 1), per_method=True)
    rows = []
    for m in _methods(s):
        flat = TrialConfig.from_partial(fit_balancer({**base, **m})).to_flat()
        name = spaces.method_label(m)
        rows.append({"trial_id": f"{DEFAULT_CONFIG}{name}", "method": name, **flat})
    return pd.DataFrame(rows)


# -- the pieces ------------------------------------------------------------------------------------
def _check(s: StudySettings) -> list[tuple[str, str]]:
    if s.space not in spaces.SPACES:
        raise UsageError(f"--space {s.space!r} is not one of {list(spaces.SPACES)} (see --list-spaces)")
    objectives = spaces.objectives(s.space, s.objective)
    if len(objectives) > 1 and s.scheduler == "asha":
        raise UsageError("--scheduler asha needs one objective: ASHA stops trials by ranking one metric, and a "
                         "multi-objective study has no single ranking; use --scheduler fifo or --objective single")
    methods = len(_methods(s))
    if s.samples < 0:
        raise UsageError(f"--samples {s.samples} must be >= 0 (0: no search, each method's default configuration)")
    if s.samples == 0 and s.repeat_best < 1:
        raise UsageError("--samples 0 skips the search: add --repeat-best 1 --seeds N (or --folds K) to train each "
                         "method's default configuration")
    if s.folds and (s.folds < 2 or s.config.get("data.split") != "patient"):
        raise UsageError(f"--folds {s.folds}: folds are whole patients: give --folds K >= 2 with --split patient")
    if s.samples % methods:
        raise UsageError(f"--samples {s.samples}: space {s.space} runs one search per method, so the total must be "
                         f"a multiple of its {methods} methods (e.g. {methods * max(1, round(s.samples / methods))})")
    for name, value, low in (("--epochs", s.epochs, 1),
                             ("--max-concurrent", s.max_concurrent, 1), ("--seeds", s.seeds, 1)):
        if value < low:
            raise UsageError(f"{name} {value} must be at least {low}")
    if s.repeat_best < 0:
        raise UsageError(f"--repeat-best {s.repeat_best} must be >= 0")
    if s.test and s.repeat_best < 1:
        raise UsageError("--test scores the --repeat-best re-runs on the test split: add --repeat-best K "
                         "(e.g. --repeat-best 1 --seeds 3)")
    if s.cpus_per_trial <= 0 or s.gpus_per_trial < 0:
        raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if s.address:
        _check_reachable(s.address)
    if "://" in s.storage:
        raise UsageError(f"--storage {s.storage}: only local or mounted shared folders are supported for now")
    return objectives


def _methods(s: StudySettings) -> list[dict[str, Any]]:
    """The space's methods, or those ``--methods`` names (a method's search does not depend on the others)."""
    if not s.methods:
        return spaces.methods(s.space)
    return spaces.select_methods(s.space, s.methods, s.config)  # also shared@K/<balancer>; ConfigError: one line


def _prepare_folder(s: StudySettings) -> Path:
    """The study folder, checked before any work: writable, enough free space, never overwritten."""
    storage = Path(s.storage).expanduser().resolve()
    name = s.name or f"{s.space}-{time.strftime('%Y%m%d-%H%M%S')}"
    study_dir = storage / name
    try:
        storage.mkdir(parents=True, exist_ok=True)
        probe = storage / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as err:
        raise UsageError(f"--storage {storage}: cannot write there ({err.strerror or err}); "
                         "choose a folder you can write to") from None
    free = shutil.disk_usage(storage).free
    if free < MIN_FREE_BYTES:
        raise UsageError(f"--storage {storage}: only {free / 2**20:.0f} MiB free; a study needs at least "
                         f"{MIN_FREE_BYTES / 2**20:.0f} MiB for checkpoints and results")
    if study_dir.exists() and any(study_dir.iterdir()):
        if s.resume:
            return study_dir
        if not s.overwrite:
            raise UsageError(f"{study_dir} already holds a study; use --resume to continue it, "
                             "--overwrite to replace it, or another --name")
        shutil.rmtree(study_dir)
        shutil.rmtree(repeats_dir(study_dir), ignore_errors=True)  # its re-runs belong to the study replaced
    elif s.resume:
        raise UsageError(f"--resume: there is no study at {study_dir} to resume")
    study_dir.mkdir(parents=True, exist_ok=True)
    return study_dir


def _start_ray(s: StudySettings) -> None:
    if ray.is_initialized():
        return
    if s.dashboard_host not in LOCAL_HOSTS:
        print(f"warning: the Ray dashboard will listen on {s.dashboard_host}: anyone who reaches that address can "
              "submit jobs (CVE-2023-48022); token authentication is on, keep the token secret "
              "(`ray get-auth-token`)", file=sys.stderr)
    # Ray >= 2.52 turns token authentication on by default for a new local cluster; we never turn it off.
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        print("warning: RAY_AUTH_MODE=disabled: the Ray dashboard and job API accept anyone who can reach them",
              file=sys.stderr)
    try:
        if s.address:
            context = ray.init(address=s.address, log_to_driver=False)
        else:  # "local": a new instance of our own, never the cluster a stale ray_current_cluster file names
            context = ray.init(address="local", include_dashboard=True, dashboard_host=s.dashboard_host,
                               dashboard_port=s.dashboard_port, log_to_driver=False)
    except Exception as err:  # an unreachable --address, a port in use, ...
        raise UsageError(f"cannot start or reach Ray{' at ' + s.address if s.address else ''}: "
                         f"{str(err).splitlines()[0][:200]}" + (f"; {AUTH_HINT}" if s.address else "")) from None
    url = getattr(context, "dashboard_url", None)
    if url:
        print(f"Ray dashboard: http://{url}  (token login: `ray get-auth-token` prints the token)", flush=True)


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast on an unreachable ``--address`` (``ray.init`` itself retries for minutes)."""
    if address == "auto" or "://" in address:
        return  # "auto" reads the local cluster file; ray:// (Ray Client) is checked by ray.init
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address {address!r}: expected HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UsageError(f"--address {address}: no Ray head node answers there ({err.strerror or err}); start one "
                         "with `ray start --head` or check the address") from None


def _tune_config(s: StudySettings, base: dict[str, Any], objectives: list[tuple[str, str]],
                 study_dir: Path) -> TuneConfig:
    # one independent Optuna study per method, all in STORAGE/NAME/optuna.db (study/searchers.py)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the recorder prints one line per epoch already
    searcher = PerMethodSearch(s.space, base, objectives, s.samples, seed=s.seed,
                               storage=storage_url(study_dir / OPTUNA_DB), methods=_methods(s))
    limited = ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent)
    print(searcher.plan(), flush=True)
    if s.scheduler == "asha":  # one ASHA per method: a trial is ranked only against its own method's
        metric, mode = objectives[0]
        names = [spaces.method_label(m) for m in _methods(s)]
        scheduler = PerMethodASHA(names, time_attr="epoch", metric=metric, mode=mode, max_t=s.epochs,
                                  grace_period=1, reduction_factor=2)
    else:
        scheduler = FIFOScheduler()
    return TuneConfig(search_alg=limited, scheduler=scheduler, num_samples=s.samples, reuse_actors=REUSE_WORKERS,
                      trial_dirname_creator=trial_folder)


def trial_folder(trial: Any) -> str:
    """A trial's folder name: ``trial_<id>`` (Tune's default spells out the whole config, 150+ characters;
    the config is in trials.parquet)."""
    return f"trial_{trial.trial_id}"


def _run_config(s: StudySettings, experiment_dir: Path, recorder: ResultsRecorder) -> RunConfig:
    return RunConfig(
        name=experiment_dir.name,
        storage_path=str(experiment_dir.parent),
        callbacks=[recorder, KeepBestCheckpoints()],
        # only a dead worker raises out of a trial (train_trial records every deterministic failure),
        # so retrying from the last checkpoint is never a blind retry of the same error
        failure_config=FailureConfig(max_failures=2),
        # Tune keeps every checkpoint while a trial runs (deleting one a later snapshot may still point at
        # broke --resume after a SIGKILL); KeepBestCheckpoints prunes a completed trial to its best epoch's
        # checkpoint and its latest. The score attribute only orders Tune's own view of them.
        checkpoint_config=CheckpointConfig(num_to_keep=None, checkpoint_score_attribute=EPOCH_SCORE,
                                           checkpoint_score_order="max"),
        verbose=s.verbose,
    )


def _repeat_best(s: StudySettings, study_dir: Path, trainable: Any, chosen: Any) -> None:
    """Re-run each method's chosen configurations with N seeds each (``meta.repeat_of`` names the original).

    A second Tune experiment beside the study (``NAME-repeats``); a resumed study restores it, so the
    re-runs it finished stay and none is started twice."""
    folder = repeats_dir(study_dir)
    recorder = ResultsRecorder(study_dir, s.space)
    if Tuner.can_restore(str(folder)):
        print(f"repeat-best: resuming {folder.name}", flush=True)
        Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=True).fit()
        return
    points = []
    for _, row in chosen.iterrows():
        config = row_config(row)
        for seed in range(s.seeds):
            points.append({**config, "train.seed": s.seed + 1000 + seed, "meta.repeat_of": row["trial_id"]})
    if not points:
        print("repeat-best: no finished trial to repeat", file=sys.stderr)
        return
    per = "per method" if s.samples else "per method: its default"
    print(f"repeat-best: {len(chosen)} configs ({max(s.repeat_best, 1)} {per}) x {s.seeds} seeds", flush=True)
    tuner = Tuner(
        trainable,
        # Tune wants every key a point sets declared in the param space; a point leaves the keys of other
        # methods' balancers at None (the config drops them, the Parquet row reads NaN there)
        param_space=dict.fromkeys(k for p in points for k in p),
        tune_config=TuneConfig(search_alg=BasicVariantGenerator(points_to_evaluate=points,
                                                                max_concurrent=s.max_concurrent),
                               num_samples=len(points), reuse_actors=REUSE_WORKERS,
                               trial_dirname_creator=trial_folder),
        run_config=_run_config(s, folder, recorder),
    )
    tuner.fit()


def _heldout(s: StudySettings, study_dir: Path, data: Any, chosen: Any) -> None:
    """Costs measured alone (study/costs.py) and, with ``--test``, the re-runs scored on the test split
    (study/heldout.py): ``costs.parquet``, ``test_runs.parquet`` and ``headline.parquet``. A resumed study
    keeps the costs and scores it has (idempotent)."""
    from study import heldout
    from study.costs import measure_isolated
    from study.verdict import print_verdict, write_verdict
    from trainables.data.splits import split_overlap

    if chosen.empty:
        print("costs/test: no finished trial to measure or score", file=sys.stderr)
        return
    best = chosen.groupby("method", sort=False).head(1)  # each method's chosen configuration
    costs = heldout.read_costs(study_dir, best)
    if costs is None:
        print(f"costs: {len(best)} configurations, each alone on an otherwise idle worker", flush=True)
        costs = measure_isolated(best, without_test(data), gpu=s.gpus_per_trial > 0)
        print(f"costs: {heldout.write_costs(study_dir, costs)}")
    data_cfg = TrialConfig.from_partial(s.config).data
    if not s.test:
        return
    runs = heldout.score_reruns(study_dir, chosen, split_seed=s.seed, scored=heldout.read_runs(study_dir))
    leaks = split_overlap(data.groups, {k: v for k, v in data.splits.items() if len(v)}).leaks
    path = heldout.write_heldout(study_dir, chosen, runs, costs, data_cfg.split, s.seed, data_cfg.source, leaks)
    if not s.folds:  # a folds study prints (and pairs) its folds together (study/folds.py)
        heldout.print_headline(path)
        if len(runs):
            print_verdict(write_verdict(study_dir, runs, costs))


def _summary(study_dir: Path, objectives: list[tuple[str, str]], wall_s: float, errors: int) -> None:
    trials = read_trials(study_dir)
    metric, mode = objectives[0]
    column = f"best.{metric}"
    shown = ["trial_id", "status", "method", "best_epoch", column, "best.val.map", "best.val.map50",
             "best.val.view_accuracy", "time.train_s"]
    best = best_trials(trials, column, mode, k=5)
    one_method = best["method"].nunique() <= 1
    top = best if one_method else best.groupby("method", sort=False).head(1)  # each method's best, best first
    shown = list(dict.fromkeys(c for c in shown if c in top))
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        held = " (held-out scores: the headline above)" if (study_dir / HEADLINE_FILE).is_file() else ""
        print(f"\nbest trials: by {column} at each trial's best epoch{'' if one_method else ', each method its best'}; "
              f"validation split, the one they were selected on{held}")
        searched = trials["repeat_of"].fillna("").astype(str).eq("").any() if "repeat_of" in trials else True
        print(top[shown].to_string(index=False) if len(top) else "  (no finished trial with a score)" if searched
              else "  (no search: --samples 0 re-ran each method's default configuration)")
    compute = float(trials.get("time.total_s", pd.Series(dtype=float)).fillna(0).sum())
    counts = trials["status"].value_counts().to_dict()
    print(f"\n{len(trials)} trials ({', '.join(f'{v} {k}' for k, v in counts.items())}); wall {wall_s:.0f}s, "
          f"summed trial compute {compute:.0f}s" + (f", {errors} errored in Tune" if errors else ""))
    print(f"results: {study_dir / 'trials.parquet'}\n         {study_dir / 'epochs.parquet'}\n"
          f"         {study_dir / 'manifest.json'}\noptuna:  optuna-dashboard {storage_url(study_dir / OPTUNA_DB)}\n"
          f"report:  python -m study.analyze {study_dir}")
