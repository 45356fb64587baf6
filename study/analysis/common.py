"""Formatting and hover text shared by the figures and tables.

(study/benchmarks/common.py, the same name, is what the benchmarks share: each package's ``common``.)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pandas as pd

from study.analysis.columns import ACCURACY, COST

FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"
LAYOUT = {"template": "plotly_white", "font": {"family": FONT, "size": 12}, "margin": {"l": 60, "r": 20, "t": 50,
                                                                                          "b": 50}}


def fmt(value: Any, digits: int = 4) -> str:
    """A value for a person: 4 significant digits for floats, '—' for missing."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "—"
        if abs(v) >= 1e5:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(value)


def fmt_score(value: float | None, signed: bool = False) -> str:
    """A score (or a difference of scores) for a person: always three decimals, never scientific notation,
    never "-0.000"; '—' for missing."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    v = round(float(value), 3) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def fmt_sig(value: float | None, sig: int = 3) -> str:
    """A cost or a ratio for a person: ``sig`` significant figures, never scientific notation (8,100 ms,
    374 ms, 2.95, 0.0222); '—' for missing."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    v = float(value)
    if v == 0:
        return "0"
    decimals = sig - 1 - math.floor(math.log10(abs(v)))  # may be negative: 8,123 -> 8,120
    return f"{round(v, decimals):,.{max(0, decimals)}f}"


def is_parameter_count(column: str) -> bool:
    """``cost.params`` and the trials' ``eff.params_*``: counted parameters, exact and the same every run."""
    return column == "cost.params" or column.startswith("eff.params_")


def fmt_count(value: float | None) -> str:
    """A counted quantity (a model's parameters) for a person: exact, with thousands separators (1,900,660),
    in every table, hover and console line alike — never rounded to significant figures (1,900,000), which
    would hide the difference between two architectures; '—' for missing."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    return f"{round(float(value)):,}"


def fmt_cost(column: str, value: float | None) -> str:
    """A cost column's value: a parameter count exactly (``fmt_count``), any other cost to three significant
    figures (``fmt_sig``)."""
    return fmt_count(value) if is_parameter_count(column) else fmt_sig(value)


def fmt_score_ci(mean: float, half: float) -> str:
    """A score's mean ± 95% half-width, both with three decimals ('—' for a missing mean)."""
    if not math.isfinite(mean):
        return "—"
    return fmt_score(mean) + (f" ± {fmt_score(half)}" if math.isfinite(half) else "")


def fmt_column_ci(row: Any, column: str) -> str:
    """``column``'s ``.mean`` ± ``.ci95`` from a headline row (a pandas Series), as ``fmt_score_ci``."""
    mean, half = row.get(f"{column}.mean"), row.get(f"{column}.ci95")
    return fmt_score_ci(math.nan if mean is None else float(mean), math.nan if half is None else float(half))


def fmt_sig_ci(mean: float, half: float) -> str:
    """A cost's mean ± 95% half-width, significant figures ('—' for a missing mean)."""
    if not math.isfinite(mean):
        return "—"
    return fmt_sig(mean) + (f" ± {fmt_sig(half, 2)}" if math.isfinite(half) else "")


def fmt_cost_ci(column: str, mean: float, half: float) -> str:
    """A cost column's mean ± 95% half-width: a parameter count exactly (its half-width only where the chosen
    configurations differ in size), any other cost as ``fmt_sig_ci``."""
    if not is_parameter_count(column):
        return fmt_sig_ci(mean, half)
    return fmt_count(mean) + (f" ± {fmt_count(half)}" if math.isfinite(mean) and math.isfinite(half) and half > 0
                              else "")


def cell_float(v: object) -> float:
    """A Parquet cell as a float: a number (numpy's too) as is, an empty cell (None) or text as NaN."""
    return float(v) if isinstance(v, numbers.Real) else math.nan


def fmt_ci(mean: float, half: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return "—"
    if not math.isfinite(half):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ± {fmt(half, 2)}"


def hover_texts(trials: pd.DataFrame, per_method: dict[str, list[str]]) -> dict[str, str]:
    """trial_id -> HTML hover text: identity, scores, costs and the trial's own hyperparameters
    (``per_method``: method -> the keys to show)."""
    out = {}
    for _, row in trials.iterrows():
        lines = [f"<b>{row['trial_id']}</b> · {row['method']} · {row['status']}"]
        if row.get("repeat_of"):
            lines.append(f"seed repeat of {row['repeat_of']} (train.seed={fmt(row.get('train.seed'))})")
        for col, label in ACCURACY.items():
            if pd.notna(row.get(col)):
                lines.append(f"{label}: {fmt(row[col])}")
        for col, label in COST.items():
            if pd.notna(row.get(col)):
                lines.append(f"{label}: {fmt_cost(col, row[col])}")
        params = per_method.get(row["method"], [])
        if params:
            lines.append("<i>hyperparameters</i>")
            lines.extend(f"{k} = {fmt(row.get(k))}" for k in params)
        out[str(row["trial_id"])] = "<br>".join(lines)
    return out


def use_log_axis(values: pd.Series | np.ndarray, ratio: float = 20.0) -> bool:
    """A log axis when the finite positive values span more than ``ratio``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(v.size and (v > 0).all() and v.max() / v.min() > ratio)


# mantissas of a log axis's ticks, coarse to fine: the first set that puts two ticks inside the data is used
LOG_TICK_MANTISSAS = ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8))


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values for a log axis over the positive values ``low`` .. ``high``: 1, 2, 5 × powers of ten where two
    of them fall inside the span, finer mantissas where it is narrower (a train step of 120-190 ms holds no 1-2-5
    value, and an axis with no tick inside its data shows no label at all), the two ends themselves where even
    the finest set puts fewer than two inside; each set reaches past the span (÷ / × 1.5) so that the ends of range
    bars are labelled too."""
    lo, hi = math.floor(math.log10(low)), math.ceil(math.log10(high))
    for mantissas in LOG_TICK_MANTISSAS:
        ticks = [m * 10.0 ** e for e in range(lo, hi + 1) for m in mantissas]
        if sum(low <= t <= high for t in ticks) >= 2:
            return [t for t in ticks if low / 1.5 <= t <= high * 1.5]
    return sorted({low, high})


def tick_text(value: float) -> str:
    """A tick's label: three significant figures without trailing zeros (0.2, 1.5, 120, 2,100,000)."""
    text = fmt_sig(value, 3)
    return text.rstrip("0").rstrip(".") if "." in text else text


def value_axis(values: pd.Series | np.ndarray, ratio: float = 20.0) -> dict[str, Any]:
    """``update_xaxes`` settings that a person can read for ``values``: a log axis (``use_log_axis``) ticked at
    1, 2, 5 × powers of ten written out in full (plotly's own log ticks label 2 .. 9 with the digit alone, so 0.2
    cannot be told from 2); one tick, at the value, when every value is the same (no ticks from 2.294643M to
    2.294645M, or -0.5 to 1, around a single value); nothing otherwise."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {}
    if use_log_axis(v, ratio):
        ticks = log_ticks(float(v.min()), float(v.max()))
        return {"type": "log", "tickmode": "array", "tickvals": ticks, "ticktext": [tick_text(t) for t in ticks]}
    if v.min() == v.max():  # (no fixed range: plotly then mis-scales the other panels of a figure with matched axes)
        return {"tickmode": "array", "tickvals": [float(v[0])], "ticktext": [fmt(float(v[0]))]}
    return {}
