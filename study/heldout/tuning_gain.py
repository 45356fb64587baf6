"""Did tuning help? Each method's searched configuration against its default, paired by outer fold.

Two folds studies over the same patients — one run with ``--samples N`` (in each fold, the search chose a
configuration per method on that fold's development patients), one with ``--samples 0`` (each method's default
configuration) — hold each method's held-out re-runs per fold. A method's gain from tuning is, fold by fold, its
searched re-runs' mean score minus its default re-runs' mean score (seeds averaged within a fold), read exactly as
the verdict reads a pair of methods (study/heldout/verdict.py: Nadeau–Bengio corrected interval over the folds,
the metric's margin, Holm within each family counting only these pairs). The pairs are only meaningful when both
studies dealt every patient to the same fold: ``same_folds`` refuses anything else.

tuning_gain.parquet (written into the searched study): verdict.parquet's columns, one row per method and held-out
score, method_a = "<method> searched", method_b = "<method> default".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from study.errors import UsageError
from study.heldout.correction import fold_correction
from study.heldout.verdict import COST_FAMILY, verdict_rows
from trainables.wording import counted

TUNING_GAIN_FILE = "tuning_gain.parquet"
SEARCHED, DEFAULT = "searched", "default"


def same_folds(searched: Path, default: Path) -> pd.DataFrame:
    """The folds table both studies share (folds.parquet: ``patient``, ``fold``); a UsageError naming the first
    difference when their patients or folds differ."""
    tables = []
    for study in (searched, default):
        path = study / "folds.parquet"
        if not path.is_file():
            raise UsageError(f"{study}: no folds.parquet: tuning is compared fold by fold between two --folds studies")
        tables.append(pd.read_parquet(path).set_index("patient")["fold"])
    a, b = tables
    if set(a.index) != set(b.index):
        raise UsageError(f"{searched} and {default} hold different patients ({len(set(a.index) ^ set(b.index))} "
                         "in one only): they are not the same data set and split")
    moved = (a != b.reindex(a.index))
    if moved.any():
        raise UsageError(f"{searched} and {default} deal {counted(int(moved.sum()), 'patient')} to different "
                         "folds (e.g. "
                         f"{moved[moved].index[0]}: fold {a[moved].iloc[0]} vs {b.reindex(a.index)[moved].iloc[0]}); "
                         "run both with the same --folds and split seed")
    return a.rename("fold").reset_index()


def default_twin(method: str) -> str | None:
    """The method whose default configuration is ``method``'s own (``shared/static`` -> ``shared/equal``: the
    balancer's ``same_at_defaults``), or None."""
    from search_spaces.registry import method_name, parse_method
    from trainables.balancing.registry import available, resolve

    parsed = parse_method(method)
    balancer = str(parsed["balancer.name"])
    twin = resolve(balancer).same_at_defaults if balancer in available() else None
    return method_name(parsed["arch"], twin, parsed.get("model.shared_stages", -1)) if twin else None


def default_runs_of(searched: pd.DataFrame, default: pd.DataFrame) -> dict[str, str]:
    """searched method -> the default study's method whose re-runs are its default configuration's: itself, or
    its ``default_twin`` when the default study has that and not it."""
    have = set(default["method"])
    out = {}
    for m in dict.fromkeys(searched["method"]):
        twin = default_twin(m)
        if m in have or twin in have:
            out[m] = m if m in have else str(twin)
    return out


def tuning_rows(searched: pd.DataFrame, default: pd.DataFrame, folds: pd.DataFrame,
                margins: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Rows of tuning_gain.parquet: for each method in both test_runs tables (``method``, ``fold``, ``train.seed``,
    ``test.<metric>``, ...), its searched re-runs against its default re-runs, paired by fold. A method whose
    default configuration is another's (``default_runs_of``: ``shared/static`` at w_det = w_cls = 1 is
    ``shared/equal``) is paired with that one's default re-runs, under its own name."""
    twins = default_runs_of(searched, default)
    if not twins:
        raise UsageError("the two studies share no method: nothing to compare")
    defaults = [default[default["method"] == d].assign(method=f"{m} {DEFAULT}") for m, d in twins.items()]
    runs = pd.concat([searched[searched["method"].isin(twins)].assign(method=lambda t: t["method"] + f" {SEARCHED}"),
                      *defaults], ignore_index=True)
    pairs = [(f"{m} {SEARCHED}", f"{m} {DEFAULT}") for m in twins]
    rows = verdict_rows(runs, pd.DataFrame(columns=["method"]), margins, fold_correction(folds), pairs=pairs)
    return [r for r in rows if r["family"] != COST_FAMILY]  # same architecture, same costs: scores only
