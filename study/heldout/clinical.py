"""Jet present per valve, as a reader takes it: counts, rates and their 95% intervals, from a scored split's metrics.

trainables/metrics/clinical.py computes, per valve (detection class), the threshold chosen on validation and
each level's counts and rates on the split scored (``<split>.jet_*`` keys). This module reads them back:

- **one split** (``study.evaluate``, one checkpoint): each rate with its Wilson score interval (study/analysis/stats.py:
  ``wilson_interval``) from its own counts, e.g. sensitivity TP of TP + FN. Clips of one patient are not
  independent, so a clip interval is too narrow where patients have many clips; the study interval is not, and
  neither counts the uncertainty of the threshold chosen on validation;
- **a study's re-runs** (headline.parquet): the rates' mean ± 95% CI over seeds, or over outer folds (Nadeau–Bengio
  corrected), by the same machinery as every other held-out score (study/heldout/reruns.py: ``headline_rows``).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from study.analysis.common import fmt_column_ci
from study.analysis.stats import wilson_interval
from trainables.metrics.clinical import COUNTS, LEVELS, RATES
from trainables.wording import counted

RULE = ("jet present = any box of the valve's class at or above its threshold, in any frame of the clip (of the "
        "study); the threshold: per valve, the Youden point over the validation clips (J = sensitivity + "
        "specificity − 1, a tie to the lowest threshold), applied unchanged to the split scored, so a study is "
        "flagged when one of its clips is; a clip (study) is positive when any of its frames has a labelled box of "
        "the class")
RATE_LABEL = {"sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV", "npv": "NPV"}
# each rate's numerator and the other count of its denominator (sensitivity = TP / (TP + FN), ...)
RATE_COUNTS = {"sensitivity": ("tp", "fn"), "specificity": ("tn", "fp"), "ppv": ("tp", "fp"), "npv": ("tn", "fn")}


def valves(keys: Any, split: str) -> list[str]:
    """The valves (class names) ``keys`` hold jet scores for, in their order: from ``<split>.jet_threshold_<c>``
    (headline columns: ``<split>.jet_clip_sensitivity_<c>.mean``)."""
    out = []
    for k in keys:
        for head in (f"{split}.jet_threshold_", f"{split}.jet_clip_sensitivity_"):
            if str(k).startswith(head):
                name = str(k).removeprefix(head).removesuffix(".mean").removesuffix(".ci95")
                if name not in out:
                    out.append(name)
    return out


def jet_summary(metrics: dict[str, float], split: str) -> dict[str, Any]:
    """The JSON ``study.evaluate`` writes: per valve its threshold and, per level, the counts and each rate with its
    95% Wilson interval (``[low, high]``; null where undefined)."""
    out: dict[str, Any] = {}
    for valve in valves(metrics, split):
        entry: dict[str, Any] = {"threshold": _json(metrics.get(f"{split}.jet_threshold_{valve}"))}
        for level in LEVELS:
            counts = {k: _json(metrics.get(f"{split}.jet_{level}_{k}_{valve}"), whole=True) for k in COUNTS}
            rates = {}
            for rate in RATES:
                low, high = rate_interval(metrics, split, level, rate, valve)
                rates[rate] = {"value": _json(metrics.get(f"{split}.jet_{level}_{rate}_{valve}")),
                               "ci95": [_json(low), _json(high)]}
            entry[level] = {**counts, **rates}
        out[valve] = entry
    return out


def rate_interval(metrics: dict[str, float], split: str, level: str, rate: str, valve: str) -> tuple[float, float]:
    """The 95% Wilson interval of one rate from its counts (NaN, NaN where they are missing or its denominator 0)."""
    hit, miss = (metrics.get(f"{split}.jet_{level}_{k}_{valve}", math.nan) for k in RATE_COUNTS[rate])
    if not (math.isfinite(hit) and math.isfinite(miss)):
        return math.nan, math.nan
    return wilson_interval(int(hit), int(hit + miss))


def jet_lines(metrics: dict[str, float], split: str, chosen_on: str) -> list[str]:
    """``study.evaluate``'s table: one line per valve and level, counts and rates with 95% Wilson intervals."""
    names = valves(metrics, split)
    if not names:
        return []
    where = ("the split scored itself (in-sample: optimistic)" if chosen_on == split else f"the {chosen_on} split")
    width = max(5, *(len(v) for v in names))
    lines = [f"  jet present, per valve: thresholds chosen on {where}; {RULE}.",
             "  95% Wilson intervals from the counts (clips of one patient are not independent: the clip intervals "
             "are too narrow; neither counts the threshold's own uncertainty)",
             f"    {'valve':<{width}} {'threshold':>9}  {'level':<5} {'TP':>4} {'FP':>4} {'TN':>4} {'FN':>4}  "
             + "  ".join(f"{RATE_LABEL[r]:<21}" for r in RATES).rstrip()]
    for valve in names:
        threshold = metrics.get(f"{split}.jet_threshold_{valve}", math.nan)
        for i, level in enumerate(LEVELS):
            counts = " ".join(_count(metrics.get(f"{split}.jet_{level}_{k}_{valve}")) for k in COUNTS)
            cells = [_rate(metrics.get(f"{split}.jet_{level}_{r}_{valve}", math.nan),
                           rate_interval(metrics, split, level, r, valve)) for r in RATES]
            shown = (f"{threshold:.3f}" if math.isfinite(threshold) else "—") if i == 0 else ""
            lines.append(f"    {valve if i == 0 else '':<{width}} {shown:>9}  {level:<5} {counts}  "
                         + "  ".join(f"{c:<21}" for c in cells).rstrip())
    if any(not math.isfinite(metrics.get(f"{split}.jet_threshold_{v}", math.nan)) for v in names):
        lines.append("    —: no threshold, where the validation clips hold no clip with (or without) a jet of the "
                     "valve, or no box of it: Youden's J is undefined there")
    return lines


def headline_jet_lines(row: pd.Series, split: str = "test") -> list[str]:
    """print_headline's lines for one method: per level, each valve's sensitivity and specificity, mean ± 95% CI over
    the headline's unit (folds or seeds)."""
    lines = []
    for level in LEVELS:
        parts = []
        for valve in valves(row.index, split):
            cells = [f"{RATE_LABEL[r][:4]} {fmt_column_ci(row, f'{split}.jet_{level}_{r}_{valve}')}"
                     for r in ("sensitivity", "specificity")]
            parts.append(f"{valve} {', '.join(cells)}")
        if parts:
            lines.append(f"    jet present per {level}: " + "; ".join(parts))
    return lines



def _rate(value: float, interval: tuple[float, float]) -> str:
    if not math.isfinite(value):
        return "—"
    low, high = interval
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if math.isfinite(low) else f"{value:.3f}"


def _count(value: float | None) -> str:
    return f"{value:>4.0f}" if value is not None and math.isfinite(value) else f"{'—':>4}"


def _json(value: float | None, whole: bool = False) -> float | int | None:
    if value is None or not math.isfinite(value):
        return None
    return int(value) if whole else float(value)


def verdict_jet_lines(table: pd.DataFrame) -> list[str]:
    """print_verdict's lines for the clinical family: per pair of methods, which jet scores an interval finds better
    for either method (the row's reading, and Holm's within the family), and how many it leaves otherwise."""
    if "family" not in table:
        return []
    jets = table[table["family"] == "clinical"]
    lines = []
    for (a, b), group in jets.groupby(["method_a", "method_b"], sort=False):
        parts = []
        for column, said in (("conclusion", ""), ("conclusion_holm", " after Holm")):
            words = group[column].fillna(group["conclusion"]).astype(str) if column in group else group["conclusion"]
            better = [f"{m} for {a if w.startswith('method_a') else b} ({_diff(r)})"
                      for (_, r), m, w in zip(group.iterrows(), group["metric"], words, strict=True)
                      if w.endswith("better")]
            rest = words[~words.str.endswith("better")]
            counts = ", ".join(f"{n} {w}" for w, n in rest.value_counts().items())
            parts.append(f"better{said}: {', '.join(better) or 'none'}" + (f"; {counts}" if counts else ""))
        lines.append(f"  {a} vs {b}, jet present per valve ({counted(len(group), 'comparison')}): "
                     + " | ".join(parts))
    return lines


def _diff(row: pd.Series) -> str:
    mean, half = row.get("diff_mean"), row.get("diff_ci95")
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{mean:+.3f}" + (f" ± {half:.3f}" if half is not None and math.isfinite(half) else "")
