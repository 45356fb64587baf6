"""When a paired comparison cannot tell: the stated rule that labels a verdict row ``inconclusive``.

An interval that includes no difference is "no difference at 95%" only where something was measured.
Two cases say nothing instead, whatever the interval:

- **both methods score at chance** on the metric's task: detection when both methods' mean test mAP@.5 is
  below ``DETECTION_CHANCE`` (the detector finds nothing yet, as after one epoch); the view task when
  both methods' mean test view accuracy is at or below the majority view's share of the test frames
  (``test.view_majority_share``: what always naming the most common view scores). A difference between
  two chance-level scores is noise, so every metric of that task (mAP@.5 and mAP@.5:.95, and the jet scores read
  from the same detector: study/heldout/clinical.py; view accuracy, macro F1 and clip accuracy) is inconclusive,
  even when its interval excludes 0;
- **a cost ratio whose interval spans more than a factor of** ``MAX_RATIO_SPAN`` (high / low) and
  includes 1: the repeated measurements disagree so much (a busy machine, a cold cache) that the
  ratio could be anything in that span. An interval that excludes 1 stays a finding however wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from study.analysis.common import fmt_sig

INCONCLUSIVE = "inconclusive"
DETECTION_CHANCE = 0.01  # mAP@.5 below this for both methods: neither detects anything yet
MAX_RATIO_SPAN = 2.0  # a cost ratio's interval high / low above this says the measurements cannot tell
DETECTION = ("map50", "map", "map75")
JET = "jet_"  # jet present per valve: the detector's boxes read per clip and per study
VIEW = ("view_accuracy", "view_macro_f1", "view_clip_accuracy", "view_balanced_accuracy")
RULE = (f"inconclusive: both methods at chance on the task (test mAP@.5 below {DETECTION_CHANCE:g} for both; "
        "view accuracy at or below the majority view's share for both), or a cost ratio whose 95% interval "
        f"includes 1 and spans more than a factor of {MAX_RATIO_SPAN:g}")


@dataclass(frozen=True)
class Chance:
    """Which tasks both methods of a pair score at chance on (means over the pairs)."""

    detection: bool
    view: bool


def chance(map50_a: float, map50_b: float, accuracy_a: float, accuracy_b: float, majority: float) -> Chance:
    """Both methods at chance on detection (mAP@.5 below DETECTION_CHANCE for both) and on the view task
    (accuracy at or below ``majority``, the majority view's share, for both). NaN: not known, not at chance."""
    det = all(math.isfinite(v) and v < DETECTION_CHANCE for v in (map50_a, map50_b))
    # "at or below", up to the rounding of a mean over folds (0.4 + 0.4 + 0.4) / 3 > 0.4
    view = math.isfinite(majority) and all(math.isfinite(v) and v <= majority + 1e-9 for v in (accuracy_a, accuracy_b))
    return Chance(det, view)


def inconclusive_reason(metric: str, kind: str, low: float, high: float, at_chance: Chance) -> str:
    """Why a verdict row on ``metric`` cannot tell ("" when it can): the module's rule, in words."""
    if kind == "ratio":
        wide = math.isfinite(low) and math.isfinite(high) and low > 0 and high / low > MAX_RATIO_SPAN
        if wide and low <= 1.0 <= high:
            return f"interval spans a factor of {fmt_sig(high / low)} (more than {MAX_RATIO_SPAN:g})"
        return ""
    if (metric in DETECTION or metric.startswith(JET)) and at_chance.detection:
        return f"both at chance (test mAP@.5 below {DETECTION_CHANCE:g})"
    if metric in VIEW and at_chance.view:
        return "both at chance (view accuracy at or below the majority view's share)"
    return ""


BUSY_FACTOR = 2.0  # one configuration's timings (max / min) disagreeing by more than this: the machine was busy
TIMED = ("cost.train_step_ms", "cost.throughput_img_s", "cost.latency_ms_b1", "cost.latency_ms_b32")


def busy_spreads(costs: pd.DataFrame) -> dict[str, dict[str, tuple[float, float]]]:
    """method -> timed cost -> (lowest, highest) where one configuration was measured more than once (one row per
    fold of costs.parquet with the same ``cost.trial_id``, e.g. a method's default configuration in every fold) and
    the measurements disagree by more than BUSY_FACTOR: wall-clock timings of the same work that far apart say
    the machine was busy, not how fast the method is. Counted quantities (parameters, GFLOPs) never vary."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    if costs.empty or "cost.trial_id" not in costs:
        return out
    for (method, _), group in costs.groupby(["method", "cost.trial_id"], sort=False):
        for c in TIMED:
            v = pd.to_numeric(group.get(c, pd.Series(dtype=float)), errors="coerce").dropna()
            v = v[v > 0]
            if len(v) > 1 and v.max() / v.min() > BUSY_FACTOR:
                out.setdefault(str(method), {})[c] = (float(v.min()), float(v.max()))
    return out
