"""The study, phase by phase: ``run_study`` reads top to bottom.

1. settings checked, study folder prepared, data decoded once (handed to trials through Ray's object store);
2. Ray started (or reached), every node checked;
3. the search (study/tuning/search.py; none with ``--samples 0``);
4. each method's chosen configurations (its best searched trials, or its default configuration);
5. their re-runs with N seeds (study/tuning/repeats.py);
6. costs measured alone and held-out scores (study/heldout/phase.py);
7. the manifest and a summary.

With ``--folds K`` (study/heldout/folds.py: ``run_folds``, which the command calls instead of ``run_study``)
steps 3-6 run once per outer patient fold, each fold a complete study of its own: that module uses this one's
``begin_study`` and ``run_phases``, and this one imports nothing of it. One study = one folder ``STORAGE/NAME``
(study/store/folder.py).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from search_spaces import registry as spaces
from study.analysis.headline import HEADLINE_FILE
from study.errors import UsageError
from study.store.folder import OPTUNA_DB, mark_started, prepare_folder
from study.store.manifest import driver_numerics, write_manifest
from study.store.selection import best_trials
from study.store.trials import read_trials
from study.tuning.nodes import check_nodes, describe
from study.tuning.resume import check_resume
from study.tuning.search import run_search
from study.tuning.searchers import storage_url
from study.tuning.session import check_reachable, start_ray
from study.tuning.settings import StudySettings, check_settings, methods_of
from trainables.config import TrialConfig, fit_balancer
from trainables.data.loader import load_data
from trainables.data.splits import patients_fingerprint, split_seed_of, without_test
from trainables.metrics import names
from trainables.ray_trial import train_trial
from trainables.wording import counted

DEFAULT_CONFIG = "default:"  # --samples 0: a method's default configuration stands for its chosen trial


@dataclass
class Begun:
    """A study checked and begun: its folder, base config (with what decides its split), decoded data,
    objectives and start time (``time.time()``)."""

    study_dir: Path
    base: dict[str, Any]
    data: Any
    objectives: list[tuple[str, str]]
    started: float


def begin_study(s: StudySettings) -> Begun:
    """Steps 1-2: settings checked, folder prepared (a resume checked against what the study began with:
    study/tuning/resume.py), data decoded, the manifest written, Ray started. Raises UsageError for anything
    the user can fix, before anything is written to a resumed study."""
    objectives = check_settings(s)
    if s.address:
        check_reachable(s.address)
    if s.mlflow:  # installed and answering, before the study folder is made
        from study.tracking.mlflow_study import check_tracking

        check_tracking(s.mlflow)
    study_dir = prepare_folder(s.storage, s.name, s.space, s.resume, s.overwrite)
    base = spaces.base_config(s.space, s.config, methods_of(s))
    if s.resume:  # settings, code, base config and resolved numerics against what the study last ran
        check_resume(study_dir, s, base=base)
    search = counted(s.samples, "trial") if s.samples else "no search (each method's default configuration)"
    print(f"study {study_dir.name}: space {s.space}, {search} x {counted(s.epochs, 'epoch')}, objective "
          f"{', '.join(f'{m} ({mode})' for m, mode in objectives)}", flush=True)

    t0 = time.perf_counter()
    cfg = TrialConfig.from_flat(base).data
    data = load_data(cfg, seed=split_seed_of(cfg, s.seed), progress=True)
    print(f"data: {counted(data.images.shape[0], 'image')} at {data.imgsz} px, "
          f"{data.images.nbytes / 2**20:.1f} MiB decoded, "
          f"splits {', '.join(f'{k}={len(v)}' for k, v in data.splits.items())} ({time.perf_counter() - t0:.1f}s)",
          flush=True)
    print(driver_numerics(s, base).explain(str(base["train.precision"])), flush=True)
    if s.resume:
        check_resume(study_dir, s, data.fingerprint)
    if s.test and len(data.splits.get("test", ())) == 0:
        have = [k for k, v in data.splits.items() if len(v)]
        raise UsageError(f"--test: {base['data.source']} has no 'test' images (it has {have}); give the data.yaml a "
                         "'test:' folder or use --split patient")
    started = time.time()
    write_manifest(study_dir, s, base, data.fingerprint, started, finished=False)
    if s.mlflow:  # before Ray starts: an unreachable tracking server is one line, not a study without its runs
        from study.tracking.mlflow_study import begin_parent

        begin_parent(study_dir, s, data.fingerprint)
    start_ray(s.address, s.dashboard_host, s.dashboard_port)
    if s.address:  # every node must import the project and see the study folder: checked before any trial
        for line in describe(check_nodes(study_dir)):
            print(line, flush=True)
    return Begun(study_dir, base, data, objectives, started)


def run_study(s: StudySettings) -> Path:
    """Run (or resume) a study on one split; returns its folder. (``--folds K``: study/heldout/folds.py.)"""
    b = begin_study(s)
    base = {**b.base, "data.test_patients": patients_fingerprint(b.data.groups, b.data.splits.get("test", ()))}
    errors = run_phases(s, b.study_dir, base, b.data, b.objectives)
    write_manifest(b.study_dir, s, base, b.data.fingerprint, b.started)
    if s.mlflow:
        from study.tracking.mlflow_study import finish_parent

        finish_parent(b.study_dir)
    print_summary(b.study_dir, b.objectives, wall_s=time.time() - b.started, errors=errors)
    return b.study_dir


def run_phases(s: StudySettings, study_dir: Path, base: dict[str, Any], data: Any,
               objectives: list[tuple[str, str]]) -> int:
    """One complete study in ``study_dir``: the search (none with ``--samples 0``), the re-runs of each
    method's chosen configurations, the isolated costs and the held-out scores. Every phase resumes
    from what an earlier run of the same study left. Returns the number of trials Tune saw error."""
    from study.heldout.phase import run_heldout
    from study.tuning.repeats import run_repeats

    mark_started()  # from here trials may run: a failure or Ctrl-C leaves a study to --resume, not one to discard
    trainable = tune.with_resources(  # trials never see the test split: it is not in what they are handed
        tune.with_parameters(train_trial, data=without_test(data)), {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
    )
    errors = run_search(s, study_dir, trainable, base, objectives) if s.samples else 0
    chosen = chosen_configs(s, study_dir, base, objectives)
    if s.repeat_best > 0:
        run_repeats(s, study_dir, trainable, chosen)
    if s.test or s.costs:
        run_heldout(s, study_dir, data, chosen)
    return errors


def chosen_configs(s: StudySettings, study_dir: Path, base: dict[str, Any],
                   objectives: list[tuple[str, str]]) -> pd.DataFrame:
    """Each method's chosen configurations: its K best searched trials (study/store/selection.py), or with
    ``--samples 0`` its default configuration (``trial_id`` ``default:<method>``)."""
    if s.samples:
        metric, mode = objectives[0]
        return best_trials(read_trials(study_dir), names.trial_column(metric), mode, k=max(s.repeat_best, 1),
                           per_method=True)
    rows = []
    for m in methods_of(s):
        flat = TrialConfig.from_partial(fit_balancer({**base, **m})).to_flat()
        name = spaces.method_label(m)
        rows.append({"trial_id": f"{DEFAULT_CONFIG}{name}", "method": name, **flat})
    return pd.DataFrame(rows)


def print_summary(study_dir: Path, objectives: list[tuple[str, str]], wall_s: float, errors: int) -> None:
    """The best trials (validation split), the trial counts, the wall time and where the results are."""
    trials = read_trials(study_dir)
    metric, mode = objectives[0]
    column = names.trial_column(metric)
    shown = ["trial_id", "status", "method", "best_epoch", column, "best.val.map", "best.val.map50",
             "best.val.view_accuracy", "time.train_s"]
    best = best_trials(trials, column, mode, k=5)
    one_method = best["method"].nunique() <= 1
    top = best if one_method else best.groupby("method", sort=False).head(1)  # each method's best, best first
    shown = list(dict.fromkeys(c for c in shown if c in top))
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        held = " (held-out scores: the headline above)" if (study_dir / HEADLINE_FILE).is_file() else ""
        print(f"\nbest trials: by {column} at each trial's best epoch{'' if one_method else ', each method its best'}; "
              f"validation split, the one they were selected on{held}")
        searched = trials["repeat_of"].fillna("").astype(str).eq("").any() if "repeat_of" in trials else True
        print(top[shown].to_string(index=False) if len(top) else "  (no finished trial with a score)" if searched
              else "  (no search: --samples 0 re-ran each method's default configuration)")
    compute = float(trials.get("time.total_s", pd.Series(dtype=float)).fillna(0).sum())
    counts = trials["status"].value_counts().to_dict()
    print(f"\n{counted(len(trials), 'trial')} ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
          f"wall {wall_s:.0f}s, summed trial compute {compute:.0f}s"
          + (f", {errors} errored in Tune" if errors else ""))
    print(f"results: {study_dir / 'trials.parquet'}\n         {study_dir / 'epochs.parquet'}\n"
          f"         {study_dir / 'manifest.json'}\noptuna:  optuna-dashboard {storage_url(study_dir / OPTUNA_DB)}\n"
          f"report:  python -m study.analyze {study_dir}", file=sys.stdout)
