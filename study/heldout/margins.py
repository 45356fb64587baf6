"""The equivalence margins a verdict reads its intervals against: ``--margin METRIC=VALUE``.

An interval that contains 0 is not evidence that two methods are equal; it is evidence of equality only when
it also lies inside a margin stated beforehand — the largest difference that would not change a decision —
which is the two one-sided tests reading (Schuirmann 1987: the 95% two-sided interval inside ±m is TOST at
2.5% per side, a stricter reading than the 90% interval bioequivalence uses). Each default says why:

- ``map50`` 0.05: re-training with another seed moves one run's mAP@.5 on 14 unseen patients by about ±0.03
  (README, the recipe); a difference below 0.05 is within a seed or two of that spread and about a fifth
  of the 0.23–0.35 this data reaches, not one that decides between two detectors.
- ``map`` 0.02: mAP@.5:.95 runs at a quarter to a third of mAP@.5 on this data (0.06 against 0.23), so 0.02
  is about the same share of its level as 0.05 of mAP@.5.
- ``view_accuracy`` and ``view_macro_f1`` 0.03: three percentage points, the seed-to-seed spread of one run
  (±0.03): one frame in 33.
- ``view_clip_accuracy`` 0.05: a fold's test patients bring 16–30 clips, so one clip moves it by 3–6 points;
  a margin smaller than one clip could never be met.
- every jet sensitivity and specificity (``jet_<clip|study>_<rate>_<valve>``: study/heldout/clinical.py) 0.10: a
  tenth of the jets there (or of the clean clips or studies); a smaller margin could rarely be met, since a fold's
  test patients bring a handful of clips and fewer studies with a given valve's jet (one positive study in four
  moves a sensitivity by 0.25). Not settable by ``--margin`` (one for the family: ``JET_MARGIN``).
- every cost ``×1.10`` (a ratio inside [1/1.10, 1.10]): a 10% difference in time, memory or size does not
  decide a deployment, and repeated timings of the same work on a quiet machine differ by a few percent.
"""

from __future__ import annotations

import math

from study.errors import UsageError
from study.heldout.costs import COSTS

SCORE_MARGINS = {"map50": 0.05, "map": 0.02, "view_accuracy": 0.03, "view_macro_f1": 0.03,
                 "view_clip_accuracy": 0.05}
COST_MARGIN = 1.10  # a ratio margin: equivalent when the interval lies inside [1 / 1.10, 1.10]
DEFAULT_MARGINS = {**SCORE_MARGINS, **dict.fromkeys(COSTS, COST_MARGIN)}
JET_MARGIN = 0.10  # every jet_* sensitivity and specificity (a family named by the data's valves)
JET_PREFIX = "jet_"


def parse_margins(items: list[str] | None) -> dict[str, float]:
    """Every metric's margin: the defaults, with ``METRIC=VALUE`` items (``--margin map50=0.05``,
    ``--margin cost.train_step_ms=1.2``) in their place; a UsageError (one line) for anything else."""
    margins = dict(DEFAULT_MARGINS)
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in margins:
            raise UsageError(f"--margin {item}: give METRIC=VALUE with METRIC one of {', '.join(margins)}")
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--margin {item}: {text!r} is not a number") from None
        if key in SCORE_MARGINS and not (math.isfinite(value) and value > 0):
            raise UsageError(f"--margin {item}: a score's margin is a difference > 0 (e.g. {key}=0.05)")
        if key not in SCORE_MARGINS and not (math.isfinite(value) and value > 1):
            raise UsageError(f"--margin {item}: a cost's margin is a ratio > 1 (e.g. {key}=1.1 for ±10%)")
        margins[key] = value
    return margins


def margin_of(metric: str, margins: dict[str, float]) -> float:
    """``metric``'s margin: ``margins``' own, else its default (JET_MARGIN for a jet score); NaN where it has none."""
    return margins.get(metric, DEFAULT_MARGINS.get(metric, JET_MARGIN if _jet(metric) else math.nan))


def test_scale(metric: str, margins: dict[str, float]) -> float:
    """The margin on the scale the test runs on: the difference itself for a score, log(ratio) for a cost."""
    value = margin_of(metric, margins)
    return value if metric in SCORE_MARGINS or _jet(metric) else math.log(value)


def said(metric: str, margins: dict[str, float]) -> str:
    """``±0.05`` for a score, ``×1.10`` for a cost."""
    value = margin_of(metric, margins)
    return f"±{value:g}" if metric in SCORE_MARGINS or _jet(metric) else f"×{value:.2f}"


def _jet(metric: str) -> bool:
    return metric.startswith(JET_PREFIX)
