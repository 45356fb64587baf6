"""Jet present, per valve: the detector read as a yes/no answer per clip and per study, at a threshold chosen on
validation. Pure functions over plain arrays (numpy only).

A clinician asks of each valve (detection class) whether a loop (clip) or a patient's study shows a jet, not
where the boxes lie. The answer a detector gives: **jet present = any box of that class at or above a confidence
threshold** in any frame of the clip (of the study). The labels say the same of the truth: a clip (study) is
positive for a class when any of its frames has a labelled box of it.

**The threshold** is one per class, chosen on the validation split and applied unchanged to the split scored:
the Youden point over the validation clips, the threshold t among the clips' own scores that maximises
J = sensitivity + specificity − 1; a tie goes to the lowest such t (the more sensitive reading, a screening's
preference). J is compared exactly (J · P · N is an integer), so a tie is a tie. One threshold decides both
levels, so a study is flagged exactly when one of its clips is: the clip is chosen over the study because
validation holds about five clips per patient, and too few patients with and without a given jet for the point to
exist at all at the study level. The threshold is NaN (and every score of that class with it) when the
validation clips hold no positive or no negative of the class, or no box of it: Youden's J is then undefined.

A frame whose file name gives no clip (trainables/data/clips.py; synthetic frames, a folder of stills) is a clip
of its own: a still image is read as a loop of one frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVELS = ("clip", "study")
RATES = ("sensitivity", "specificity", "ppv", "npv")
COUNTS = ("tp", "fp", "tn", "fn")


@dataclass(frozen=True)
class JetFrames:
    """What one split holds for the jet questions, one entry per frame (N frames, C classes).

    scores: (N, C) float, each frame's highest box confidence of each class (0 where it has no box of it).
    labels: (N, C) bool, the frame has a labelled box of the class.
    clips: (N,) object, the frame's clip id; None: the frame is a clip of its own.
    studies: (N,) str, the frame's patient (the split's group).
    """

    scores: np.ndarray
    labels: np.ndarray
    clips: np.ndarray
    studies: np.ndarray

    def units(self, level: str) -> np.ndarray:
        """(N,) the unit id of each frame at ``level`` ("clip" or "study")."""
        if level == "study":
            return np.asarray(self.studies).astype(str)
        return np.array([f"{c}" if c is not None else f"#frame {i}" for i, c in enumerate(self.clips)], dtype=object)


def frame_scores(preds: Sequence[tuple[Any, Any, Any]], num_classes: int) -> np.ndarray:
    """(N, C) float64: per image, the highest score of its boxes of each class (0 where none).

    preds: one ``(boxes, scores, labels)`` per image (detection_metrics' format), tensors or arrays."""
    out = np.zeros((len(preds), num_classes), np.float64)
    for i, (_, scores, labels) in enumerate(preds):
        s, lab = _np(scores).reshape(-1).astype(np.float64), _np(labels).reshape(-1).astype(np.int64)
        np.maximum.at(out[i], lab, s)  # scores > 0: postprocess keeps only those above its conf_thres
    return out


def frame_labels(gts: Sequence[tuple[Any, Any]], num_classes: int) -> np.ndarray:
    """(N, C) bool: per image, whether it has a labelled box of each class. gts: one ``(boxes, labels)`` per image."""
    out = np.zeros((len(gts), num_classes), bool)
    for i, (_, labels) in enumerate(gts):
        out[i, _np(labels).reshape(-1).astype(np.int64)] = True
    return out


def pool(units: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: its frames' highest score and whether any of its frames is labelled positive.

    units (N,) hashable; scores (N, C); labels (N, C) bool. Returns (U, C) scores and (U, C) bool labels, units in
    sorted order of their ids."""
    _, unit = np.unique(np.asarray(units).astype(str), return_inverse=True)
    n = int(unit.max()) + 1 if len(unit) else 0
    best = np.zeros((n, scores.shape[1]), np.float64)
    np.maximum.at(best, unit, scores)
    positive = np.zeros((n, labels.shape[1]), bool)
    np.logical_or.at(positive, unit, labels)
    return best, positive


def youden_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The Youden point: the threshold t among ``scores`` (> 0) maximising sensitivity + specificity − 1 when a
    unit is called positive at score >= t; the lowest such t on a tie. NaN when ``labels`` hold no positive or no
    negative, or no score is above 0.

    scores (U,) float; labels (U,) bool."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    p, n = int(y.sum()), int((~y).sum())
    candidates = np.unique(s[s > 0])  # (K,) ascending
    if p == 0 or n == 0 or len(candidates) == 0:
        return math.nan
    called = s[None, :] >= candidates[:, None]  # (K, U)
    tp = (called & y).sum(1).astype(np.int64)
    tn = (~called & ~y).sum(1).astype(np.int64)
    j = tp * n + tn * p  # J · P · N + P · N: exact integers, the same order as J
    return float(candidates[int(np.argmax(j))])  # argmax takes the first: the lowest threshold of a tie


def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """``tp``, ``fp``, ``tn``, ``fn`` of calling a unit positive at score >= ``threshold`` (all NaN where the
    threshold is NaN). scores (U,), labels (U,) bool."""
    if not math.isfinite(threshold):
        return dict.fromkeys(COUNTS, math.nan)
    called, y = np.asarray(scores) >= threshold, np.asarray(labels, bool)
    return {"tp": float((called & y).sum()), "fp": float((called & ~y).sum()),
            "tn": float((~called & ~y).sum()), "fn": float((~called & y).sum())}


def rates(counts: dict[str, float]) -> dict[str, float]:
    """Sensitivity TP/(TP+FN), specificity TN/(TN+FP), PPV TP/(TP+FP), NPV TN/(TN+FN); NaN where a denominator
    is 0 (no positive, no negative, nothing called positive, nothing called negative)."""
    tp, fp, tn, fn = (counts[k] for k in COUNTS)
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn)}


def jet_presence(chosen_on: JetFrames, scored: JetFrames, names: Sequence[str]) -> dict[str, float]:
    """Per class: the threshold chosen on ``chosen_on`` (the validation split) and, on ``scored``, each level's
    counts and rates at it.

    Returns a flat dict of floats, for each class name c: ``jet_threshold_<c>``; for each level in ``LEVELS``:
    ``jet_<level>_tp_<c>`` (and fp, tn, fn) and ``jet_<level>_sensitivity_<c>`` (and specificity, ppv, npv)."""
    if len(names) != chosen_on.scores.shape[1] or len(names) != scored.scores.shape[1]:
        raise ValueError(f"jet_presence: {len(names)} class names for {chosen_on.scores.shape[1]} and "
                         f"{scored.scores.shape[1]} score columns; pass one name per class")
    val_scores, val_labels = pool(chosen_on.units("clip"), chosen_on.scores, chosen_on.labels)
    pooled = {level: pool(scored.units(level), scored.scores, scored.labels) for level in LEVELS}
    out: dict[str, float] = {}
    for c, name in enumerate(names):
        threshold = youden_threshold(val_scores[:, c], val_labels[:, c])
        out[f"jet_threshold_{name}"] = threshold
        for level, (s, y) in pooled.items():
            counts = confusion(s[:, c], y[:, c], threshold)
            out.update({f"jet_{level}_{k}_{name}": v for k, v in counts.items()})
            out.update({f"jet_{level}_{k}_{name}": v for k, v in rates(counts).items()})
    return out


def _ratio(num: float, den: float) -> float:
    return num / den if math.isfinite(den) and den > 0 else math.nan


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)
