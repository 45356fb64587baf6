"""The one selector of a study's best: a trial's best epoch, and the best trial(s) per method.

Every consumer goes through here: the study's summary (study/tuning/phases.py), ``--repeat-best``,
``evaluate --best``, the report's headline, the searcher (the value Optuna is told) and the checkpoint kept for a trial.

- A trial's **best epoch** is its epoch with the highest finite ``val.objective`` (the first one
  on a tie); ``study/store/trials.py: trial_row`` takes ``best_epoch`` and ``best.*`` from it.
- A study's **best trials** are ranked by a ``best.*`` column of ``trials.parquet`` (the best
  epoch's value), among finished searched trials (never a ``--repeat-best`` seed run, whose
  configuration was selected for its score), per method = (arch, balancer) by default, since
  methods are separate searches with their own objective scales.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from search_spaces.registry import SPLIT_KEY, method_label
from search_spaces.registry import parse_method as registry_parse_method
from trainables.metrics.names import OBJECTIVE

EPOCH_SCORE = OBJECTIVE  # what ranks a trial's epochs (maximised)
MULTI_TASK_ARCHS = ("shared", "dual")


def best_epoch(history: Iterable[Mapping[str, Any]], score: str = EPOCH_SCORE) -> Mapping[str, Any] | None:
    """The epoch dict with the highest finite ``score`` (the first on a tie); None when none has one."""
    best: Mapping[str, Any] | None = None
    for epoch in history:
        value = epoch.get(score)
        if isinstance(value, (int, float)) and math.isfinite(value) and (best is None or value > best[score]):
            best = epoch
    return best


def methods_of(trials: pd.DataFrame) -> pd.Series:
    """Each trial's method label (``shared/gradnorm``, ``shared@2/gradnorm``, ``dual``, ``det_only``, ...)."""
    keys = [k for k in ("arch", "balancer.name", SPLIT_KEY) if k in trials]
    return pd.Series([method_label(r) for r in trials[keys].to_dict("records")], index=trials.index, dtype=object)


def best_trials(trials: pd.DataFrame, metric: str = f"best.{EPOCH_SCORE}", mode: str = "max", k: int = 1,
                per_method: bool = True) -> pd.DataFrame:
    """The ``k`` best finished searched trials by ``metric`` (per method when ``per_method``), best first.

    ``trials`` is ``trials.parquet`` (or the report's copy of it); the result gains a ``method``
    column. Trials whose ``metric`` is missing or not finite are never selected.
    """
    if trials.empty or metric not in trials:
        return trials.iloc[:0].assign(method=pd.Series(dtype=object))
    repeat = trials["repeat_of"].fillna("").astype(str) != "" if "repeat_of" in trials \
        else pd.Series(False, index=trials.index)
    score = pd.to_numeric(trials[metric], errors="coerce")
    ok = trials[(trials["status"] == "finished") & ~repeat & np.isfinite(score.astype(float))]
    ok = ok.assign(method=methods_of(ok) if len(ok) else pd.Series(dtype=object))
    ranked = ok.assign(_score=pd.to_numeric(ok[metric], errors="coerce")).sort_values(
        "_score", ascending=(mode == "min"), kind="stable").drop(columns="_score")
    return ranked.groupby("method", sort=False).head(k) if per_method else ranked.head(k)


def parse_method(text: str) -> str:
    """A method label from ``arch/balancer``, ``shared@K/balancer`` or ``arch`` as a user types it
    (``dual/equal`` -> ``dual``)."""
    return method_label(registry_parse_method(text))


def is_multi_task(method: str) -> bool:
    """``shared/...``, ``shared@K/...`` (a split) and ``dual``: the methods that train both tasks."""
    return method.split("/")[0].partition("@")[0] in MULTI_TASK_ARCHS
