"""Which checkpoint is a study's chosen model: the rule ``export --best`` and the MLflow registry follow.

A study chooses each method's configuration on validation scores (study/store/selection.py); with ``--test``
that configuration is re-run with N seeds and every re-run is scored once on the test split
(study/heldout/reruns.py). The chosen *model* is one of those re-runs:

- **which re-run**: of the method's best configuration (the first of headline.parquet's ``configs``), the re-run
  that finished with a test score and has the highest ``best.val.objective`` (its best epoch's validation
  score, the score that chose that epoch; on a tie the lowest seed). Its seeds share one validation split, so
  this compares like with like and reads no test score. The weights are that re-run's best-epoch checkpoint.
- **which fold** (``--folds K``): fold k's models trained on the other folds' patients and validated on their
  own inner split, so validation scores do not compare across folds and no fold is chosen by a score: the
  model is fold 0's, or the fold ``--fold`` names. Its held-out scores are the cross-fold estimate of the
  procedure that made it (every fold's model on its own unseen patients), with the fold's own beside them.
  A model trained on every patient is not something a study makes.
- **which method**: a study of several methods does not choose among them (its verdict compares them, with
  their costs): ``--method`` names one; a one-method study needs none.
- **a study without --test**: no re-run was scored; the model is ``evaluate --best``'s (the best searched trial
  by ``best.val.objective``), and its card holds no held-out score.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from study.analysis.headline import HEADLINE_FILE
from study.errors import UsageError
from study.heldout.reruns import failed, has_score, read_runs
from study.store.checkpoints import trial_checkpoint
from study.store.selection import EPOCH_SCORE, parse_method
from study.store.trials import read_trials

FOLD_DIR = "fold-{}"  # study/heldout/folds.py's (not imported here: that module imports Ray)
SEED_RULE = (f"of the method's best configuration, its re-run with the highest best.{EPOCH_SCORE} (validation, at "
             "its best epoch; seeds share one validation split) among those that finished with a test score")
FOLD_RULE = ("no fold is chosen by a score (each fold validates on other patients): fold {fold} of {folds} by "
             "{why}; its weights trained on the other folds' patients only")
SEARCH_RULE = f"the best searched trial by best.{EPOCH_SCORE} (the study ran without --test: no held-out score)"


@dataclass(frozen=True)
class Chosen:
    """A study's chosen model: where its checkpoint is and why it is the one.

    ``where``: the folder whose trials it is of (the study, or ``STUDY/fold-k``); ``run``: its test_runs.parquet
    row (empty for a study without --test); ``fold``/``folds``: None/0 outside a folds study."""

    study_dir: Path
    where: Path
    method: str
    checkpoint: Path
    trial_id: str
    repeat_of: str
    seed: int
    epoch: int
    rule: str
    fold: int | None = None
    folds: int = 0
    run: dict[str, Any] = field(default_factory=dict)


def study_folds(study_dir: Path) -> int:
    """K of a ``--folds K`` study (its manifest's settings), 0 for a one-split study."""
    manifest = json.loads((study_dir / "manifest.json").read_text())
    return int((manifest.get("settings") or {}).get("folds") or 0)


def methods_scored(study_dir: Path) -> list[str]:
    """The methods of a study's held-out headline with at least one scored re-run, in the headline's order."""
    path = study_dir / HEADLINE_FILE
    if not path.is_file():
        return []
    head = pd.read_parquet(path)
    return [str(m) for m, n in zip(head["method"], head["n_runs"], strict=True) if int(n) > 0]


def chosen_model(study_dir: Path | str, method: str | None = None, fold: int | None = None) -> Chosen:
    """The study's chosen model of ``method`` (of ``fold`` in a folds study); see the module docstring.
    Raises UsageError (one line) for a folder that is no study, a method it lacks, or a checkpoint gone."""
    study_dir = Path(study_dir).expanduser().resolve()
    if not (study_dir / "manifest.json").is_file():
        raise UsageError(f"--best {study_dir}: no study there (no manifest.json); give the study folder STORAGE/NAME")
    folds = study_folds(study_dir)
    if fold is not None and not folds:
        raise UsageError(f"--fold {fold}: {study_dir.name} is a one-split study (no --folds); leave --fold out")
    if folds:
        why = "default" if fold is None else "--fold"
        fold = 0 if fold is None else fold
        if not 0 <= fold < folds:
            raise UsageError(f"--fold {fold}: {study_dir.name} has folds 0 to {folds - 1}")
        where = study_dir / FOLD_DIR.format(fold)
        rule = f"{FOLD_RULE.format(fold=fold, folds=folds, why=why)}; within the fold, {SEED_RULE}"
    else:
        where, rule, why = study_dir, SEED_RULE, ""
    if not (where / HEADLINE_FILE).is_file():
        if folds:
            raise UsageError(f"--best {study_dir}: {where.name} has no {HEADLINE_FILE} (a published study keeps no "
                             "fold folders or checkpoints; an unfinished one: finish it with --resume)")
        return _best_searched(study_dir, method)
    head = pd.read_parquet(where / HEADLINE_FILE)
    method = _one_method(study_dir, [str(m) for m in head["method"]], method)
    configs = [t for t in str(head.loc[head["method"] == method, "configs"].iloc[0]).split(",") if t]
    runs = read_runs(where)
    if runs is None or runs.empty or not configs:
        raise UsageError(f"--best {study_dir}: {method} has no scored re-run in {where.name}")
    ok = runs[(runs["method"] == method) & has_score(runs) & ~failed(runs) & (runs["repeat_of"] == configs[0])]
    if ok.empty:
        raise UsageError(f"--best {study_dir}: no re-run of {method}'s chosen configuration {configs[0]} finished "
                         f"with a test score in {where.name} (test_runs.parquet: status, scored, reason)")
    trials = read_trials(where).set_index("trial_id")
    score = [float(trials.at[t, f"best.{EPOCH_SCORE}"]) if t in trials.index else math.nan for t in ok["trial_id"]]
    ranked = ok.assign(_score=pd.Series(score, index=ok.index).fillna(-math.inf)).sort_values(
        ["_score", "train.seed"], ascending=[False, True], kind="stable")
    run = ranked.iloc[0].drop("_score").to_dict()
    trial, epoch = str(run["trial_id"]), int(run["best_epoch"])
    path = trial_checkpoint(where, trial, epoch, strict=True)
    if path is None:
        raise UsageError(f"--best {study_dir}: re-run {trial}'s epoch-{epoch} checkpoint is gone from "
                         f"{where.name}-repeats; pass a CHECKPOINT explicitly")
    return Chosen(study_dir, where, method, path, trial, str(run["repeat_of"]), int(run["train.seed"]), epoch, rule,
                  fold if folds else None, folds, run)


def _one_method(study_dir: Path, have: list[str], method: str | None) -> str:
    if method is not None:
        wanted = parse_method(method)
        if wanted not in have:
            raise UsageError(f"--method {method}: {study_dir.name} has no held-out scores of {wanted}; it has "
                             f"{', '.join(have)}")
        return wanted
    if len(have) != 1:
        raise UsageError(f"--best {study_dir}: the study compares {', '.join(have)}; it does not choose among them "
                         "(its verdict compares them with their costs): name one with --method")
    return have[0]


def _best_searched(study_dir: Path, method: str | None) -> Chosen:
    """A study without --test: ``evaluate --best``'s trial (study/evaluate.py: ``best_trial``)."""
    from study.evaluate import best_trial

    trial = best_trial(study_dir, method)
    epoch = int(trial["best_epoch"])
    path = trial_checkpoint(study_dir, str(trial["trial_id"]), epoch)
    return Chosen(study_dir, study_dir, str(trial["method"]), path, str(trial["trial_id"]), "",
                  int(trial["train.seed"]), epoch, SEARCH_RULE)
