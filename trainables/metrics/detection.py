"""Detection metrics: COCO-exact mAP plus precision / recall / F1 at the best confidence.

The numbers equal pycocotools' ``COCOeval(iouType="bbox")`` (the reference: coco_reference.py; checked
in tests/test_metrics_detection.py, timed against it in study/benchmarks/eval.py). The engine is
``trainables/metrics/coco.py``; this module converts inputs and assembles the flat dict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainables.metrics.coco import IOU_THRESHOLDS, Matches, match, precision_at_recall

_T50 = 0  # index of IoU 0.50 in IOU_THRESHOLDS
_T75 = int(np.flatnonzero(IOU_THRESHOLDS == 0.75)[0])


def detection_metrics(
    preds: Sequence[tuple[Any, Any, Any]],
    gts: Sequence[tuple[Any, Any]],
    num_classes: int,
    names: Sequence[str] | None = None,
    max_det: int = 100,
) -> dict[str, float]:
    """COCO box metrics of a detector over a set of images.

    Args:
        preds: one ``(boxes, scores, labels)`` per image: boxes (N, 4) xyxy in pixels, scores (N,),
            labels (N,) class indices in [0, num_classes). Tensors (any device) or numpy arrays.
        gts: one ``(boxes, labels)`` per image, same order: boxes (M, 4) xyxy pixels, labels (M,).
        num_classes: number of detection classes.
        names: class names for the per-class keys; default ``str(class index)``.
        max_det: pycocotools' ``maxDets``: per image *and class*, only the ``max_det`` highest-scoring
            detections are evaluated (COCO's default is 100). For a cap per image over all classes,
            cut the predictions before calling (the detector's NMS ``max_det`` does).

    Returns:
        A flat dict of Python floats:
        - ``map50``, ``map75``: COCO AP at IoU 0.50 / 0.75, averaged over classes;
          ``map``: AP averaged over IoU 0.50:0.05:0.95 and classes (COCO's headline "AP").
        - ``precision``, ``recall``, ``f1``: at IoU 0.50, at one confidence threshold ``f1_conf``
          shared by all classes: the threshold (among the detection scores) that maximises the mean
          over classes of per-class F1 (the lowest such threshold on a tie). A detection counts
          when its score >= ``f1_conf``; per class, precision = TP / counted detections (0 when
          none), recall = TP / ground truths, F1 = 2PR / (P + R) (0 when P + R = 0), where TP are
          the counted detections that COCO matching at IoU 0.50 marks as true positives (the same
          greedy matching as the AP, so a detection never flips between the two). ``precision``,
          ``recall`` and ``f1`` are the means over classes of those per-class values.
          ``f1_conf`` is NaN when no detection is of a class with ground truth (then P = R = F1 = 0).
        - ``ap50_<name>``: per-class AP at IoU 0.50.

        COCO semantics (pycocotools 2.0): greedy matching by descending score to the unmatched
        ground truth of highest IoU; IoU without the +1 pixel; 101-point interpolated precision
        with the precision envelope and zero beyond the highest recall reached; ground truths in
        images without predictions count as misses; area range "all"; no crowd or ignore regions
        (every ground truth counts). Classes without ground truth are left out of every mean and
        their ``ap50_<name>`` is NaN; when no class has ground truth every mean is NaN. With
        ground truth but no predictions everything is 0.

    Raises:
        ValueError: on malformed input, with one line saying which image and what is wrong.
    """
    if len(preds) != len(gts):
        raise ValueError(f"detection_metrics: {len(preds)} prediction entries but {len(gts)} ground-truth "
                         "entries; pass one entry per image in both")
    if max_det < 1:
        raise ValueError(f"detection_metrics: max_det={max_det}; it must be >= 1")
    names = _names(names, num_classes)
    dt_image, dt_label, dt_score, dt_box = _flatten(preds, num_classes, "preds", with_scores=True)
    gt_image, gt_label, _, gt_box = _flatten(gts, num_classes, "gts", with_scores=False)

    m = match(dt_image, dt_label, dt_score, dt_box, gt_image, gt_label, gt_box, num_classes, max_det)
    prec = precision_at_recall(m)  # (T, 101, K), -1 for classes without ground truth
    present = m.gt_per_class > 0  # (K,)
    out: dict[str, float] = {
        # Means over the flattened valid entries, as pycocotools' summarize() takes them.
        "map50": _mean(prec[_T50][:, present]),
        "map": _mean(prec[:, :, present]),
        "map75": _mean(prec[_T75][:, present]),
    }
    out.update(_best_f1(m, num_classes))
    for c, name in enumerate(names):
        out[f"ap50_{name}"] = _mean(prec[_T50, :, c]) if present[c] else math.nan
    return out


def _best_f1(m: Matches, num_classes: int) -> dict[str, float]:
    """Mean precision / recall / F1 over classes with ground truth at the best shared threshold."""
    classes = np.flatnonzero(m.gt_per_class > 0)
    if len(classes) == 0:
        return dict.fromkeys(("precision", "recall", "f1", "f1_conf"), math.nan)
    counted = np.isin(m.label, classes)
    if not counted.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "f1_conf": math.nan}
    conf = np.unique(m.score[counted])  # (U,) ascending candidate thresholds
    bounds = np.searchsorted(m.label, np.arange(num_classes + 1))  # detections are class-major
    p = np.zeros((len(classes), len(conf)))  # (K', U)
    r = np.zeros((len(classes), len(conf)))
    for i, c in enumerate(classes):
        score = m.score[bounds[c] : bounds[c + 1]]  # (n,) descending
        if len(score) == 0:
            continue  # no detections of this class: P = R = F1 = 0 at every threshold
        cum_tp = np.r_[0, np.cumsum(m.tp[_T50, bounds[c] : bounds[c + 1]])]  # (n + 1,), TP of the top j
        n = np.searchsorted(-score, -conf, side="right")  # (U,) detections with score >= conf
        tp = cum_tp[n]  # (U,)
        p[i] = np.where(n > 0, tp / np.maximum(n, 1), 0.0)
        r[i] = tp / m.gt_per_class[c]
    with np.errstate(invalid="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)  # (K', U)
    best = int(np.argmax(f1.mean(axis=0)))  # first maximum = lowest threshold (conf ascending)
    return {"precision": float(p[:, best].mean()), "recall": float(r[:, best].mean()),
            "f1": float(f1[:, best].mean()), "f1_conf": float(conf[best])}


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else math.nan


def _names(names: Sequence[str] | None, num_classes: int) -> list[str]:
    if num_classes < 1:
        raise ValueError(f"detection_metrics: num_classes={num_classes}; it must be >= 1")
    if names is None:
        return [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"detection_metrics: {len(names)} names for num_classes={num_classes}; "
                         "pass one name per class")
    return [str(n) for n in names]


def _np(x: Any, dtype: type) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _flatten(
    entries: Sequence[tuple[Any, ...]], num_classes: int, what: str, with_scores: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate per-image entries into (n,) image, (n,) label, (n,) score, (n, 4) xywh arrays."""
    boxes, scores, labels = [], [], []
    want = 3 if with_scores else 2
    for i, entry in enumerate(entries):
        if len(entry) != want:
            form = "(boxes, scores, labels)" if with_scores else "(boxes, labels)"
            raise ValueError(f"detection_metrics: {what}[{i}] has {len(entry)} parts; expected {form}")
        box = _np(entry[0], np.float64)
        box = box.reshape(0, 4) if box.size == 0 else box
        label = _np(entry[-1], np.float64).reshape(-1)
        score = _np(entry[1], np.float64).reshape(-1) if with_scores else np.ones(len(label))
        if box.ndim != 2 or box.shape[1] != 4:
            raise ValueError(f"detection_metrics: {what}[{i}] boxes have shape {box.shape}; "
                             "expected (N, 4) xyxy pixels")
        if not (len(box) == len(label) == len(score)):
            raise ValueError(f"detection_metrics: {what}[{i}] has {len(box)} boxes, {len(score)} scores and "
                             f"{len(label)} labels; they must have the same length")
        boxes.append(box)
        scores.append(score)
        labels.append(label)
    counts = [len(x) for x in labels]
    image = np.repeat(np.arange(len(counts), dtype=np.int64), counts)  # (n,)
    box = np.concatenate(boxes) if boxes else np.zeros((0, 4))  # (n, 4) xyxy
    score = np.concatenate(scores) if scores else np.zeros(0)
    label = np.concatenate(labels) if labels else np.zeros(0)
    _check(image, box, label, score, num_classes, what)
    xywh = np.concatenate([box[:, :2], box[:, 2:] - box[:, :2]], axis=1)  # (n, 4), COCO's box format
    return image, label.astype(np.int64), score, xywh


def _check(
    image: np.ndarray, box: np.ndarray, label: np.ndarray, score: np.ndarray, num_classes: int, what: str
) -> None:
    """One clear line naming the first offending image, for each kind of bad value."""
    problems = (
        (~np.isfinite(box).all(axis=1) | ~np.isfinite(score), "a NaN or infinite box or score; drop or fix it"),
        ((box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1]), "a box with x2 < x1 or y2 < y1; boxes must be xyxy"),
        ((label < 0) | (label >= num_classes) | (label != np.round(label)),
         f"a label outside the class indices 0..{num_classes - 1}; labels must be class indices"),
    )
    for bad, message in problems:
        if bad.any():
            first = int(np.argmax(bad))
            extra = f" ({label[first]:g})" if "label" in message else ""
            raise ValueError(f"detection_metrics: {what}[{image[first]}] has {message}{extra}")
