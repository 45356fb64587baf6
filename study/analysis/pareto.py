"""Pareto fronts: the trials no other trial beats on both accuracy and cost, up to the cost's noise."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_mask(cost: np.ndarray, accuracy: np.ndarray, noise: float = 1.0) -> np.ndarray:
    """(N,) bool: point i is on the front (lower cost and higher accuracy are better).

    ``noise`` (>= 1) is the factor within which two measurements of the same cost cannot be told apart
    (study/analysis/frontier.py: ``cost_noise``); 1 for a counted cost (parameters, GFLOPs). Costs within that
    factor of each other count as equal, so of points within noise of each other in cost only the more accurate
    can be on the front: the front never steps through noise. Point j dominates i when j is no costlier
    (cost_j <= noise · cost_i) and at least as accurate, and strictly better in one of them (noise · cost_j <
    cost_i, or acc_j > acc_i). Costs must be positive when noise > 1.

    With noise > 1 "no costlier" is not transitive: for costs 100, 140, 196 at noise 1.5 and accuracies rising
    with cost, 140 dominates 100 and 196 dominates 140, so only 196 stays on the front although 100 is measurably
    cheaper than it: nothing measured makes 100 cheaper than 140, which does everything 100 does and better.
    Two front points therefore always differ in cost by more than the noise (or tie in accuracy).

    A point with a NaN coordinate is never on the front and dominates nothing. Exact duplicates of a front
    point are all on the front (neither dominates the other).
    """
    if not noise >= 1.0:
        raise ValueError(f"noise={noise} must be a factor >= 1 (1: an exact cost)")
    cost = np.asarray(cost, dtype=np.float64)  # (N,)
    accuracy = np.asarray(accuracy, dtype=np.float64)  # (N,)
    valid = np.isfinite(cost) & np.isfinite(accuracy)
    c, a = cost[valid], accuracy[valid]
    # (n, n): [j, i] is True when j dominates i; O(n²) is fine for a study's hundreds of trials
    no_worse = (c[:, None] <= noise * c[None, :]) & (a[:, None] >= a[None, :])
    better = (noise * c[:, None] < c[None, :]) | (a[:, None] > a[None, :])
    dominated = (no_worse & better).any(axis=0)
    out = np.zeros(cost.shape, dtype=bool)
    out[np.flatnonzero(valid)[~dominated]] = True
    return out


def pareto_front(df: pd.DataFrame, cost: str, accuracy: str, noise: float = 1.0) -> pd.DataFrame:
    """The front's rows of ``df`` (``pareto_mask`` with ``noise``), sorted by cost (the order to draw its
    staircase in)."""
    mask = pareto_mask(df[cost].to_numpy(dtype=float), df[accuracy].to_numpy(dtype=float), noise)
    return df[mask].sort_values([cost, accuracy], ascending=[True, False])
