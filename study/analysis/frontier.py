"""The points of the accuracy–cost frontier, and how far apart two costs must be to differ.

Costs are of two kinds, and only these two reach the frontier:

- **counted**: parameters and forward GFLOPs of one image; exact, the same whenever they are counted (a trial's
  ``eff.params_total`` / ``eff.gflops`` equal costs.parquet's ``cost.params`` / ``cost.gflops``);
- **timed alone**: ``costs.parquet`` (study/heldout/costs.py), each figure the median of repeated training
  steps or forward passes in a process that held a whole node. The seconds a trial recorded while other trials
  shared its cores (``time.train_s``, ``eff.latency_ms_*``) say how busy the machine was as much as what the
  configuration costs, and are never used here.

**The noise of a timed cost.** costs.parquet keeps one median per configuration and measurement, not the
repeats behind it; what it does hold is the same work measured more than once, in separate processes at
separate times: a method's default configuration in every fold of a ``--samples 0`` study, or several folds'
chosen configurations that differ only in learning rates and loss weights (which change no arithmetic). Rows
measure *the same work* when they agree on ``same_work(column)``: for the training step, the method, the network
(parameters and GFLOPs), batch, image size, threads, device, numerics and host; for inference latency the same
without the method and batch (a balancer acts on the backward pass only, so GradNorm's and equal weights'
networks run the same forward). For each group of the same work measured at least twice, the spread is
max / min; the cost's noise is the median spread over the groups (one busy measurement widens its own group, not
the estimate). Costs within that factor of each other count as one (study/analysis/pareto.py). No group measured
twice: the noise is unknown, and no front is drawn through that cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.analysis.columns import OBJECTIVE
from study.analysis.loading import SINGLE_TASK
from study.analysis.stats import mean_ci
from trainables.metrics.names import TASK_SCORE
from trainables.wording import counted

COUNTED = {"cost.params": "parameters", "cost.gflops": "GFLOPs / image"}
TIMED = {"cost.train_step_ms": "train step (ms), timed alone",
         "cost.latency_ms_b1": "latency, batch 1 (ms), timed alone"}
FRONTIER_COSTS = {**COUNTED, **TIMED}
TRIAL_COUNTS = {"cost.params": "eff.params_total", "cost.gflops": "eff.gflops"}  # the same counts, as trials recorded
NETWORK = ("cost.params", "cost.gflops", "cost.imgsz", "cost.threads", "cost.device", "cost.precision",
           "cost.memory_format", "cost.host")  # what decides a forward pass's arithmetic and where it ran
SAME_WORK = {"cost.train_step_ms": ("method", "cost.batch", *NETWORK), "cost.latency_ms_b1": NETWORK}
HELD_OUT = "test.objective"  # the validation objective's formula on the test scores (trainables/engine.py: objective)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Noise:
    """How far apart repeated timings of the same work land: ``factor`` (max / min, the median over ``groups``
    configurations measured at least twice, ``measurements`` rows in those groups); 1 for a counted cost, NaN
    when nothing was measured twice."""

    factor: float
    groups: int = 0
    measurements: int = 0

    @property
    def known(self) -> bool:
        return math.isfinite(self.factor)

    def describe(self) -> str:
        """Short, for a panel's title: "counted: exact", "noise ×1.71 (3 configs, 15 timings)", "noise unknown"."""
        if self.groups == 0:
            return "counted: exact" if self.factor == 1.0 else "noise unknown: no front"
        return f"noise ×{self.factor:.2f} ({counted(self.groups, 'config')}, {counted(self.measurements, 'timing')})"


def cost_noise(costs: pd.DataFrame, column: str) -> Noise:
    """The measurement noise of ``column`` of costs.parquet (the module's rule); counted costs: Noise(1)."""
    if column in COUNTED:
        return Noise(1.0)
    if costs.empty or column not in costs:
        return Noise(math.nan)
    keys = [k for k in SAME_WORK[column] if k in costs]
    values = pd.to_numeric(costs[column], errors="coerce")
    ok = costs[values.notna() & (values > 0)].assign(_v=values)
    spreads, rows = [], 0
    for _, group in ok.groupby(keys, dropna=False, sort=False):
        if len(group) > 1:
            spreads.append(float(group["_v"].max() / group["_v"].min()))
            rows += len(group)
    if not spreads:
        return Noise(math.nan)
    return Noise(float(np.median(spreads)), len(spreads), rows)


def trial_points(trials: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """The searched multi-task trials (finished or stopped, not seed re-runs): ``trial_id``, ``method``,
    ``status``, ``fold`` (0 without folds), ``accuracy`` (the validation objective at the best epoch) and one
    column per frontier cost: counted from the trial's own row, timed from costs.parquet where that trial was
    measured alone (the median of its measurements; NaN for every other trial)."""
    part = trials[trials["status"].isin(["finished", "stopped"]) & ~trials["is_repeat"]
                  & ~trials["method"].isin(SINGLE_TASK)]  # a baseline's objective is one task's score
    out = pd.DataFrame({"trial_id": part["trial_id"].astype(str), "method": part["method"],
                        "status": part["status"], "fold": part.get("fold", 0),
                        "accuracy": pd.to_numeric(part[OBJECTIVE], errors="coerce")})
    for cost, column in TRIAL_COUNTS.items():
        out[cost] = pd.to_numeric(part[column], errors="coerce") if column in part else math.nan
    timed = [c for c in TIMED if c in costs]
    if timed and "cost.trial_id" in costs:
        keys = ["cost.trial_id", *(["fold"] if "fold" in costs and "fold" in part else [])]
        alone = costs[[*keys, *timed]].assign(**{c: pd.to_numeric(costs[c], errors="coerce") for c in timed})
        alone = alone.groupby(keys, as_index=False)[timed].median().rename(columns={"cost.trial_id": "trial_id"})
        out = out.merge(alone.astype({"trial_id": str}), on=["trial_id", *keys[1:]], how="left")
    for cost in TIMED:
        if cost not in out:
            out[cost] = math.nan
    return out.dropna(subset=["accuracy"]).reset_index(drop=True)


def heldout_objective(runs: pd.DataFrame, test_train_ratio: float = 0.0) -> pd.DataFrame:
    """One row per method of test_runs.parquet: ``accuracy`` (the held-out objective, the validation objective's
    formula on test scores: the mean of test mAP@0.5:0.95 and test view accuracy), ``ci95`` (its 95% half-width)
    and ``n``, pooled as headline.parquet pools every test score (study/heldout/reruns.py: ``headline_rows``):
    with folds the mean over folds of each fold's mean over seeds, the interval over folds widened by
    ``test_train_ratio`` (Nadeau–Bengio); without, over the re-runs. Single-task methods have no objective here."""
    terms = [f"test.{key.removeprefix('val.')}" for key in TASK_SCORE.values()]  # test.map, test.view_accuracy
    if runs.empty or any(t not in runs for t in terms):
        return pd.DataFrame(columns=["method", "accuracy", "ci95", "n"])
    scored = runs[runs["scored"].astype(bool)] if "scored" in runs else runs
    scored = scored.assign(**{HELD_OUT: scored[terms].apply(pd.to_numeric, errors="coerce").mean(axis=1,
                                                                                             skipna=False)})
    rows = []
    for method, mine in scored[~scored["method"].isin(SINGLE_TASK)].groupby("method", sort=False):
        mine = mine.dropna(subset=[HELD_OUT])
        folds = "fold" in mine
        values = mine.groupby("fold")[HELD_OUT].mean() if folds else mine[HELD_OUT]
        s = mean_ci([float(v) for v in values], CONFIDENCE, test_train_ratio if folds else 0.0)
        rows.append({"method": method, "accuracy": s.mean, "ci95": s.half_width, "n": s.n})
    return pd.DataFrame(rows, columns=["method", "accuracy", "ci95", "n"])


def chosen_points(runs: pd.DataFrame, costs: pd.DataFrame, test_train_ratio: float = 0.0) -> pd.DataFrame:
    """One row per method with a held-out objective and costs measured alone: ``method``, ``accuracy``,
    ``ci95``, ``n`` (``heldout_objective``) and, per frontier cost, the median over the method's rows of
    costs.parquet (one per fold: its chosen configuration, measured alone) with their range as ``<cost>.low`` /
    ``<cost>.high``. The median, not the headline's geometric mean: one busy measurement moves it least."""
    acc = heldout_objective(runs, test_train_ratio)
    if acc.empty or costs.empty or "method" not in costs:
        return acc.iloc[0:0]
    present = [c for c in FRONTIER_COSTS if c in costs]
    values = costs[["method", *present]].assign(**{c: pd.to_numeric(costs[c], errors="coerce") for c in present})
    grouped = values.groupby("method")[present]
    summary = grouped.median().join(grouped.min().add_suffix(".low")).join(grouped.max().add_suffix(".high"))
    out = acc.merge(summary.reset_index(), on="method", how="inner")
    for cost in FRONTIER_COSTS:
        for col in (cost, f"{cost}.low", f"{cost}.high"):
            if col not in out:
                out[col] = math.nan
    return out
