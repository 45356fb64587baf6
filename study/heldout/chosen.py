"""What each fold's search chose, and whether a chosen value sits at the edge of its search range.

In a searched ``--folds`` study, each fold's re-runs repeat one Tune trial per method (test_runs.parquet:
``repeat_of``). Its hyperparameters and the ranges they were drawn from are read from the record the searcher
kept, the fold's Optuna storage (one Optuna study per method; the trial's ``tune_trial_id`` user attribute names
the Tune trial): ``fold-k/optuna.db`` in a study folder, or one ``optuna.db`` whose studies are named
``fold-k/<method>`` in a published folder (study/publish.py pools them so).

A value is at the edge of its range when it lies in the outer ``EDGE`` share of the range on the range's own
scale (log for a log-scaled parameter): a search that keeps choosing there was cut short by its range, which
should then be widened. chosen_configs.parquet: fold, method, trial_id, param, value, low, high, log,
position (0 = low end, 1 = high end), at_edge.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pandas as pd
from optuna.distributions import FloatDistribution, IntDistribution

from study.errors import UsageError

CHOSEN_FILE = "chosen_configs.parquet"
OPTUNA_DB = "optuna.db"  # study/store/folder.py
EDGE = 0.05


def fold_studies(study_dir: Path) -> dict[tuple[int, str], optuna.Study]:
    """(fold, method) -> its Optuna study, from ``fold-k/optuna.db`` files or a published pooled ``optuna.db``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found: dict[tuple[int, str], optuna.Study] = {}
    per_fold = sorted(study_dir.glob(f"fold-*/{OPTUNA_DB}"))
    sources = [(int(p.parent.name.partition("-")[2]), p) for p in per_fold if p.parent.name.partition("-")[2].isdigit()]
    if not sources and (study_dir / OPTUNA_DB).is_file():
        sources = [(None, study_dir / OPTUNA_DB)]
    for fold, path in sources:
        storage = f"sqlite:///{path.resolve()}"
        for summary in optuna.get_all_study_summaries(storage):
            name = summary.study_name
            if fold is None:  # published: "fold-k/<method>"
                head, _, method = name.partition("/")
                if not (head.startswith("fold-") and head[5:].isdigit()):
                    continue
                key = (int(head[5:]), method)
            else:
                key = (fold, name)
            found[key] = optuna.load_study(study_name=name, storage=storage)
    return found


def position(value: float, low: float, high: float, log: bool) -> float:
    """Where ``value`` lies in [low, high] on the range's scale: 0 at low, 1 at high."""
    if high == low:
        return 0.5
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


def chosen_configs(study_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (fold, method, searched hyperparameter) of the configurations ``runs``' re-runs repeat."""
    studies = fold_studies(study_dir)
    if not studies:
        raise UsageError(f"{study_dir}: no Optuna storage (fold-k/{OPTUNA_DB} or a published {OPTUNA_DB}): the "
                         "chosen configurations and their ranges are read from the searcher's own record")
    rows = []
    for (fold, method, trial_id), _ in runs.groupby(["fold", "method", "repeat_of"], sort=True):
        trials = studies[(int(fold), str(method))].trials if (int(fold), str(method)) in studies else []
        trial = next((t for t in trials if t.user_attrs.get("tune_trial_id") == trial_id), None)
        if trial is None:
            raise UsageError(f"{study_dir}: fold {fold}'s re-runs of {method} repeat trial {trial_id}, which its "
                             "Optuna storage does not hold (a --samples 0 study has no search to read)")
        for param, dist in trial.distributions.items():
            if not isinstance(dist, (FloatDistribution, IntDistribution)):
                continue
            value = float(trial.params[param])
            where = position(value, dist.low, dist.high, dist.log)
            rows.append({"fold": int(fold), "method": str(method), "trial_id": str(trial_id), "param": param,
                         "value": value, "low": float(dist.low), "high": float(dist.high), "log": bool(dist.log),
                         "position": where, "at_edge": bool(where < EDGE or where > 1 - EDGE)})
    return pd.DataFrame(rows)
