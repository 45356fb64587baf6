"""The reference ``detection_metrics`` is checked against: pycocotools' COCOeval on the same input,
and the random inputs to check it on. Used by the tests (tests/test_metrics_detection.py) and the
benchmark (study/benchmarks/eval.py); nothing in training imports it.

Needs pycocotools (the dev extras: ``pip install -e '.[dev]'``), imported only when a reference is
computed. Its semantics: area range "all", one max-detections cap (pycocotools' default run would
also evaluate three more area ranges and two more caps).
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np

Preds = list[tuple[np.ndarray, np.ndarray, np.ndarray]]
Gts = list[tuple[np.ndarray, np.ndarray]]
AP_KEYS = ("map50", "map", "map75")


def random_case(
    num_images: int, dets_per_image: int, num_classes: int, seed: int, integer: bool = False, vary: bool = True
) -> tuple[Preds, Gts]:
    """Random detections near and away from random ground truths; some images empty of either.

    Boxes xyxy pixels in a 640 image; 0-6 ground truths per image (15% of images none). ``vary``:
    0..``dets_per_image`` detections per image (10% none), else exactly ``dets_per_image``.
    ``integer`` rounds coordinates (exact IoU ties, IoUs exactly on a threshold) and scores to 2
    decimals (score ties): the cases where engines disagree first.
    """
    rng = np.random.default_rng(seed)
    preds: Preds = []
    gts: Gts = []
    for _ in range(num_images):
        m = int(rng.integers(0, 7)) if rng.random() > 0.15 else 0  # 15% images without ground truth
        xy = rng.uniform(0, 500, (m, 2))
        gbox = np.concatenate([xy, xy + rng.uniform(4, 140, (m, 2))], axis=1)  # (M, 4)
        glab = rng.integers(0, num_classes, m)
        n = dets_per_image
        if vary:
            n = 0 if rng.random() < 0.1 else int(rng.integers(1, dets_per_image + 1))
        near = (rng.random(n) < 0.5) & (m > 0)
        src = rng.integers(0, max(m, 1), n)
        jitter = rng.normal(0, 6, (n, 4))
        xy = rng.uniform(0, 500, (n, 2))
        far = np.concatenate([xy, xy + rng.uniform(4, 140, (n, 2))], axis=1)
        dbox = np.where(near[:, None], gbox[src] + jitter if m else far, far)  # (N, 4)
        dbox[:, 2:] = np.maximum(dbox[:, 2:], dbox[:, :2])  # keep x2 >= x1, y2 >= y1
        dlab = np.where(near & (rng.random(n) < 0.85), glab[src] if m else 0, rng.integers(0, num_classes, n))
        score = rng.random(n)
        if integer:
            gbox, dbox, score = np.round(gbox), np.round(dbox), np.round(score, 2)
        preds.append((dbox, score, dlab.astype(np.int64)))
        gts.append((gbox, glab.astype(np.int64)))
    return preds, gts


def coco_dicts(preds: Preds, gts: Gts, num_classes: int) -> tuple[dict, list[dict]]:
    """Our per-image arrays as a COCO ground-truth dataset and a COCO results list (1-based ids)."""
    images = [{"id": i + 1, "width": 640, "height": 640} for i in range(len(gts))]
    cats = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    anns, dets = [], []
    for i, (box, lab) in enumerate(gts):
        for b, c in zip(np.asarray(box, float).tolist(), np.asarray(lab).tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": c + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    for i, (box, score, lab) in enumerate(preds):
        rows = zip(
            np.asarray(box, float).tolist(), np.asarray(score, float).tolist(), np.asarray(lab).tolist(), strict=True
        )
        for b, s, c in rows:
            dets.append(
                {"image_id": i + 1, "category_id": c + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
            )
    return {"images": images, "categories": cats, "annotations": anns}, dets


def pycocotools_metrics(
    preds: Preds, gts: Gts, num_classes: int, max_det: int = 100, with_f1: bool = False
) -> dict[str, float]:
    """The reference: pycocotools' COCOeval (bbox, area "all", one cap) on the same input.

    Returns ``map50``, ``map``, ``map75``, ``ap50_<class index>`` (NaN where pycocotools gives -1)
    and, with ``with_f1``, ``precision``, ``recall``, ``f1``, ``f1_conf`` found by a plain loop over
    thresholds from pycocotools' own IoU-0.50 matches (slow: for tests). Needs >= 1 detection.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:
        raise ImportError("the COCO reference needs pycocotools (the dev extras: pip install -e '.[dev]')") from err

    gt_dict, dets = coco_dicts(preds, gts, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        out = evaluate_ap(ev, num_classes, max_det)
    if with_f1:
        out.update(_reference_f1(ev, num_classes))
    return out


def evaluate_ap(ev: Any, num_classes: int, max_det: int) -> dict[str, float]:
    """Run a COCOeval-like ``ev`` (pycocotools' or faster-coco-eval's) on area "all" and one cap;
    ``map50``, ``map``, ``map75`` and ``ap50_<class index>`` from its precision table."""
    ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e5**2]], ["all"], [max_det]
    ev.evaluate()
    ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, 0]  # (T, R, K)
    out = {"map50": _valid_mean(prec[0]), "map": _valid_mean(prec), "map75": _valid_mean(prec[5])}
    for c in range(num_classes):
        out[f"ap50_{c}"] = _valid_mean(prec[0, :, c])
    return out


def _valid_mean(x: np.ndarray) -> float:
    return float(np.mean(x[x > -1])) if (x > -1).any() else math.nan


def _reference_f1(ev: Any, num_classes: int) -> dict[str, float]:
    """Precision / recall / F1 at the threshold of best mean F1, by brute force over thresholds."""
    n_gt = np.array([len(ev.cocoGt.getAnnIds(catIds=[c + 1])) for c in range(num_classes)])
    score: dict[int, list[float]] = {c: [] for c in range(num_classes)}
    tp: dict[int, list[bool]] = {c: [] for c in range(num_classes)}
    for e in ev.evalImgs:
        if e is None:
            continue
        c = e["category_id"] - 1
        score[c] += list(e["dtScores"])
        tp[c] += [bool(x) for x in e["dtMatches"][0] > 0]  # IoU 0.50 row
    classes = [c for c in range(num_classes) if n_gt[c] > 0]
    if not classes:
        return dict.fromkeys(("precision", "recall", "f1", "f1_conf"), math.nan)
    thresholds = sorted({s for c in classes for s in score[c]})
    best = (-1.0, 0.0, 0.0, math.nan)
    for t in thresholds:  # ascending: keep the first (lowest) threshold of the best mean F1
        ps, rs, fs = [], [], []
        for c in classes:
            sel = [s >= t for s in score[c]]
            n, k = sum(sel), sum(x and y for x, y in zip(sel, tp[c], strict=True))
            p, r = (k / n if n else 0.0), k / n_gt[c]
            ps.append(p)
            rs.append(r)
            fs.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
        if np.mean(fs) > best[0]:
            best = (float(np.mean(fs)), float(np.mean(ps)), float(np.mean(rs)), t)
    if best[0] < 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "f1_conf": math.nan}
    return {"precision": best[1], "recall": best[2], "f1": best[0], "f1_conf": best[3]}
