"""``study.run --split patient --folds K``: K complete studies, one per outer patient fold, and the verdict.

The data.yaml's frames are pooled over its folders and whole patients are dealt into K outer folds,
stratified by the views and detection classes they carry (trainables/data/folds.py). Fold k is a
study of its own in ``STORAGE/NAME/fold-k/`` (its Tune experiment, optuna.db, trials.parquet, its
re-runs in ``fold-k-repeats/``): the search and the epoch choice see the development patients only
(an inner patient split validates), each method's chosen configuration is re-run with ``--seeds N``
and scored once on fold k's patients. The trials' configs carry ``data.split_seed``, ``data.folds``,
``data.fold`` and ``data.test_patients`` (a fingerprint of fold k's patients), so every checkpoint rebuilds
its own split from itself alone, and ``study.evaluate`` refuses it where the rebuilt patients differ.

At the study's root, after the folds:
  folds.parquet      one row per patient: patient, fold (the fold whose test split holds it), frames
  test_runs.parquet  every fold's scored re-runs, with a ``fold`` column
  costs.parquet      every fold's isolated costs, with a ``fold`` column
  headline.parquet   per method: mean over folds of the mean over seeds, 95% CI over folds (unit: fold)
  verdict.parquet    every pair of methods, paired by fold (study/heldout/verdict.py)
A resumed study skips what its folds finished (each phase resumes) and rewrites the root files; a resume
that would change what is measured is refused before anything runs (study/tuning/resume.py).

The command calls ``run_folds`` instead of ``run_study`` (study/tuning/phases.py); this module uses that
one's ``begin_study`` and ``run_phases``, and the imports go one way.

(trainables/data/folds.py, the same name, assigns the patients to the folds this module runs.)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from study.analysis.headline import HEADLINE_FILE, RUNS_FILE
from study.errors import UsageError
from study.heldout import reruns
from study.heldout.correction import fold_correction
from study.heldout.verdict import print_verdict, write_verdict
from study.store.manifest import write_manifest
from study.store.trials import write_atomic
from study.tuning.phases import begin_study, run_phases
from trainables.config import DataConfig, TrialConfig
from trainables.data.folds import VIEW, missing_labels, patient_labels, stratified_folds
from trainables.data.loader import apply_groups
from trainables.data.splits import patients_fingerprint, split_seed_of
from trainables.data.types import DecodedData
from trainables.wording import counted

FOLDS_FILE = "folds.parquet"
MIN_VAL_FRAMES = 10  # fewer frames of a view in a fold's validation split: a warning (check_validation)
FOLD_DIR = "fold-{}"


def fold_dirs(study_dir: Path, k: int) -> list[Path]:
    return [study_dir / FOLD_DIR.format(i) for i in range(k)]


def check_folds(data: DecodedData, cfg: DataConfig, k: int, seed: int) -> pd.DataFrame:
    """folds.parquet's table; a UsageError when a fold would miss a view, a warning when one misses a class or
    when a fold's validation split holds fewer than ``MIN_VAL_FRAMES`` frames of a view (``check_validation``)."""
    patients, labels, frames = patient_labels(data.groups, data.views, data.boxes)
    try:
        fold = stratified_folds(labels, frames, k, seed)
    except ValueError as err:
        raise UsageError(f"--folds {k}: {err}") from None
    for label, where in missing_labels(labels, fold, k).items():
        kind, _, index = label.partition(":")
        name = (data.view_names if kind == VIEW else data.names)[int(index)]
        carriers = sum(label in lab for lab in labels)
        message = (f"{kind} {name!r} is carried by {counted(carriers, 'patient')} and is absent from the test "
                   f"patients of {'fold' if len(where) == 1 else 'folds'} {', '.join(map(str, where))}")
        if kind == VIEW:
            raise UsageError(f"--folds {k}: {message}; every fold must hold every view: use fewer folds")
        print(f"warning: --folds {k}: {message}: those folds cannot score it", file=sys.stderr)
    check_validation(data, cfg, k, seed)
    return pd.DataFrame({"patient": [str(p) for p in patients], "fold": fold.astype("int64"),
                         "frames": frames.astype("int64")})


def check_validation(data: DecodedData, cfg: DataConfig, k: int, seed: int) -> None:
    """A ``warning:`` line for each fold whose inner validation split (the one its search and epoch choice read)
    holds fewer than ``MIN_VAL_FRAMES`` frames of a view: that view's score there is a few frames' chance."""
    for fold in range(k):
        split = apply_groups(data, dataclasses.replace(cfg, folds=k, fold=fold), seed)
        counts = np.bincount(split.views[split.splits["val"]], minlength=data.num_views)  # (V,) frames per view
        for view, n in enumerate(counts):
            if n < MIN_VAL_FRAMES:
                print(f"warning: --folds {k}: fold {fold}'s validation split holds {counted(n, 'frame')} of view "
                      f"{data.view_names[view]!r} (fewer than {MIN_VAL_FRAMES}): its search and epoch choice barely "
                      "see that view; use fewer folds or a larger data.val_fraction", file=sys.stderr)


def run_folds(s: Any) -> Path:
    """Run (or resume) a folds study: each fold's complete study (study/tuning/phases.py: ``run_phases``), then
    the root's files and the verdict; returns the study folder. ``s``: StudySettings with ``folds`` >= 2."""
    b = begin_study(s)
    cfg = TrialConfig.from_flat(b.base).data
    seed = split_seed_of(cfg, s.seed)
    table = check_folds(b.data, cfg, s.folds, seed)
    write_atomic(pa.Table.from_pandas(table, preserve_index=False), b.study_dir / FOLDS_FILE)
    for k, fold_dir in enumerate(fold_dirs(b.study_dir, s.folds)):
        fold_data = apply_groups(b.data, dataclasses.replace(cfg, fold=k), seed)
        # every trial of the fold carries what decides its split, its test patients' fingerprint included
        fold_base = {**b.base, "data.fold": k,
                     "data.test_patients": patients_fingerprint(fold_data.groups, fold_data.splits["test"])}
        sizes = ", ".join(f"{name} {counted(len(idx), 'frame')} / {counted(len(set(fold_data.groups[idx])), 'patient')}"
                          for name, idx in fold_data.splits.items())
        print(f"\nfold {k + 1}/{s.folds}: {sizes}", flush=True)
        fold_dir.mkdir(parents=True, exist_ok=True)
        settings = dataclasses.replace(s, config={**s.config, "data.fold": k})
        run_phases(settings, fold_dir, fold_base, fold_data, b.objectives)
        write_manifest(fold_dir, settings, fold_base, b.data.fingerprint, b.started)
    write_manifest(b.study_dir, s, b.base, b.data.fingerprint, b.started)
    if s.test:
        summarise(b.study_dir, s.folds, cfg.source, seed, s.margins, s.against)
    if s.mlflow:
        from study.tracking.mlflow_study import finish_parent

        finish_parent(b.study_dir)
    return b.study_dir


def summarise(study_dir: Path, k: int, source: str, split_seed: int, margins: dict[str, float] | None = None,
              against: list[str] | None = None) -> None:
    """The root's test_runs / costs / headline / verdict from the folds' own files (intervals corrected by the
    folds.parquet beside them, study/heldout/correction.py; ``margins``: the verdict's, study/heldout/margins.py;
    ``against``: its planned pairs, study/heldout/verdict.py: ``method_pairs``)."""
    runs, costs, chosen = [], [], []
    for fold, fold_dir in enumerate(fold_dirs(study_dir, k)):
        if (fold_dir / RUNS_FILE).is_file():
            runs.append(pd.read_parquet(fold_dir / RUNS_FILE).assign(fold=fold))
        if (fold_dir / reruns.COSTS_FILE).is_file():
            costs.append(pd.read_parquet(fold_dir / reruns.COSTS_FILE).assign(fold=fold))
        if (fold_dir / HEADLINE_FILE).is_file():
            head = pd.read_parquet(fold_dir / HEADLINE_FILE)
            chosen += [{"method": r["method"], "trial_id": t, "fold": fold} for _, r in head.iterrows()
                       for t in str(r["configs"]).split(",") if t]
    all_runs = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()
    all_costs = pd.concat(costs, ignore_index=True) if costs else pd.DataFrame()
    if all_runs.empty or not reruns.has_score(all_runs).any():
        if len(all_runs):
            write_atomic(pa.Table.from_pandas(all_runs, preserve_index=False), study_dir / RUNS_FILE)
        print("folds: no re-run was scored; no headline or verdict", file=sys.stderr)
        return
    write_atomic(pa.Table.from_pandas(all_runs, preserve_index=False), study_dir / RUNS_FILE)
    if len(all_costs):
        reruns.write_costs(study_dir, all_costs)
    correction = fold_correction(pd.read_parquet(study_dir / FOLDS_FILE))
    rows = reruns.headline_rows(pd.DataFrame(chosen), all_runs, all_costs, "patient", split_seed, source,
                                correction=correction)
    path = study_dir / HEADLINE_FILE
    write_atomic(reruns.headline_table(rows), path)
    reruns.print_headline(path)
    print_verdict(write_verdict(study_dir, all_runs, all_costs, margins, against))
    print(f"results: {study_dir / FOLDS_FILE}\n         {study_dir / RUNS_FILE}\n         each fold's study in "
          f"{study_dir / FOLD_DIR.format('K')}/\nreport:  python -m study.analyze {study_dir}")
