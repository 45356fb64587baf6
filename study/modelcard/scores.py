"""The held-out scores a card carries, read from the study's own files (never re-measured, never a fixed list).

Two kinds, said apart in the card:

- ``procedure``: the study's estimate for the way this model was made, headline.parquet's row of its method:
  every ``test.<metric>.mean`` / ``.ci95`` pair it has (clinical per-valve scores included, wherever a version
  of the study writes them), over folds of unseen patients (``unit`` "fold", seeds averaged within a fold) or
  over seeds on one split (``unit`` "seed");
- ``model``: this checkpoint's own scores, its test_runs.parquet row (every ``test.*`` column): one split's,
  one seed's, and in a folds study one fold's patients only.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from study.analysis.headline import HEADLINE_FILE, RUNS_FILE
from study.heldout.reruns import SPLIT

_POOLED = re.compile(rf"^{SPLIT}\.(.+)\.mean$")
PROCEDURE_FIELDS = ("n_folds", "n_seeds", "n_runs", "n_failed", "n_configs", "interval_unit", "interval_correction",
                    "test_train_ratio", "split_by", "split_seed", "split_leaks_patients")


def procedure_scores(study_dir: Path, method: str) -> dict[str, Any] | None:
    """``method``'s row of the study's headline.parquet as ``{fields..., "metrics": {name: {mean, ci95}}}``
    (every metric the file has, in its order; a metric without a finite mean left out); None without one."""
    path = study_dir / HEADLINE_FILE
    if not path.is_file():
        return None
    head = pd.read_parquet(path)
    rows = head[head["method"] == method]
    if rows.empty:
        return None
    row = rows.iloc[0].to_dict()
    metrics = {}
    for column in head.columns:
        found = _POOLED.match(column)
        mean = _number(row.get(column)) if found else None
        if found and mean is not None:
            metrics[found.group(1)] = {"mean": mean, "ci95": _number(row.get(f"{SPLIT}.{found.group(1)}.ci95"))}
    fields = {k: _plain(row[k]) for k in PROCEDURE_FIELDS if k in row}
    return {**fields, "metrics": metrics}


def model_scores(run: dict[str, Any]) -> dict[str, Any] | None:
    """A test_runs.parquet row as ``{"images", "fold", "metrics": {name: value}}`` (its finite ``test.*``)."""
    if not run:
        return None
    metrics = {k.removeprefix(f"{SPLIT}."): v for k, v in ((k, _number(v)) for k, v in run.items())
               if k.startswith(f"{SPLIT}.") and v is not None}
    return {"images": _plain(run.get("images")), "fold": _plain(run.get("fold")), "metrics": metrics}


def recorded_run(study_dir: Path, checkpoint: Path) -> dict[str, Any]:
    """The test_runs.parquet row (in ``study_dir``) of the re-run whose scored checkpoint is ``checkpoint``; {}
    when none is (a searched trial's, a checkpoint from elsewhere)."""
    path = study_dir / RUNS_FILE
    if not path.is_file():
        return {}
    runs = pd.read_parquet(path)
    if "checkpoint" not in runs:
        return {}
    target = checkpoint.resolve()
    for _, row in runs.iterrows():
        value = row.get("checkpoint")
        if isinstance(value, str) and value and (study_dir / value).resolve() == target:
            return row.to_dict()
    return {}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """A numpy scalar as a plain Python value (JSON), NaN and None as None."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value
