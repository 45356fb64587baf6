"""Pareto fronts: the trials no other trial beats on both accuracy and cost."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_mask(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """(N,) bool: point i is on the front (lower cost and higher accuracy are better).

    Point j dominates i when cost_j <= cost_i and acc_j >= acc_i with at least one strict; a point
    with a NaN coordinate is never on the front and dominates nothing. Exact duplicates of a front
    point are all on the front (neither dominates the other).
    """
    cost = np.asarray(cost, dtype=np.float64)  # (N,)
    accuracy = np.asarray(accuracy, dtype=np.float64)  # (N,)
    valid = np.isfinite(cost) & np.isfinite(accuracy)
    c, a = cost[valid], accuracy[valid]
    # (n, n): [j, i] is True when j dominates i; O(n²) is fine for a study's hundreds of trials
    no_worse = (c[:, None] <= c[None, :]) & (a[:, None] >= a[None, :])
    better = (c[:, None] < c[None, :]) | (a[:, None] > a[None, :])
    dominated = (no_worse & better).any(axis=0)
    out = np.zeros(cost.shape, dtype=bool)
    out[np.flatnonzero(valid)[~dominated]] = True
    return out


def pareto_front(df: pd.DataFrame, cost: str, accuracy: str) -> pd.DataFrame:
    """The front's rows of ``df``, sorted by cost (the order to draw its staircase in)."""
    mask = pareto_mask(df[cost].to_numpy(dtype=float), df[accuracy].to_numpy(dtype=float))
    return df[mask].sort_values([cost, accuracy], ascending=[True, False])
