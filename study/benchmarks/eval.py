"""Benchmark: ``detection_metrics`` against pycocotools (and faster-coco-eval) on one random input.

    python -m study.benchmarks.eval [--images 1000] [--dets 100] [--classes 4] [--seed 0] [--repeats 3]

Prints one JSON line per engine (median seconds, ratio to ours, largest difference from ours) after
asserting that every AP figure agrees within 1e-9. All engines evaluate the same work: area range
"all" and one max-detections cap (pycocotools' default run would also evaluate three more area
ranges and two more caps). Their times include turning the per-image arrays into COCO dicts, which
is what using them costs. Also holds ``pycocotools_metrics``, the reference the tests compare with.
Needs the dev extras (pycocotools).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainables.metrics.detection import detection_metrics

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
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1, "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
    for i, (box, score, lab) in enumerate(preds):
        rows = zip(np.asarray(box, float).tolist(), np.asarray(score, float).tolist(), np.asarray(lab).tolist(),
                   strict=True)
        for b, s, c in rows:
            dets.append({"image_id": i + 1, "category_id": c + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "score": s})
    return {"images": images, "categories": cats, "annotations": anns}, dets


def pycocotools_metrics(
    preds: Preds, gts: Gts, num_classes: int, max_det: int = 100, with_f1: bool = False
) -> dict[str, float]:
    """The reference: pycocotools' COCOeval (bbox, area "all", one cap) on the same input.

    Returns ``map50``, ``map``, ``map75``, ``ap50_<class index>`` (NaN where pycocotools gives -1)
    and, with ``with_f1``, ``precision``, ``recall``, ``f1``, ``f1_conf`` found by a plain loop over
    thresholds from pycocotools' own IoU-0.50 matches (slow: for tests). Needs >= 1 detection.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_dict, dets = coco_dicts(preds, gts, num_classes)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e5**2]], ["all"], [max_det]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, 0]  # (T, R, K)
    out = {"map50": _valid_mean(prec[0]), "map": _valid_mean(prec), "map75": _valid_mean(prec[5])}
    for c in range(num_classes):
        out[f"ap50_{c}"] = _valid_mean(prec[0, :, c])
    if with_f1:
        out.update(_reference_f1(ev, num_classes))
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


def _faster_coco_eval_metrics(preds: Preds, gts: Gts, num_classes: int, max_det: int) -> dict[str, float]:
    """faster-coco-eval's COCOeval_faster, configured like the reference (for the timing table)."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt_dict, dets = coco_dicts(preds, gts, num_classes)
    coco_gt = COCO(gt_dict)
    ev = COCOeval_faster(coco_gt, coco_gt.loadRes(dets), "bbox")
    ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e5**2]], ["all"], [max_det]
    ev.evaluate()
    ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, 0]
    out = {"map50": _valid_mean(prec[0]), "map": _valid_mean(prec), "map75": _valid_mean(prec[5])}
    for c in range(num_classes):
        out[f"ap50_{c}"] = _valid_mean(prec[0, :, c])
    return out


def _max_diff(a: dict[str, float], b: dict[str, float], keys: Sequence[str]) -> float:
    diffs = [0.0 if (math.isnan(a[k]) and math.isnan(b[k])) else abs(a[k] - b[k]) for k in keys]
    return max(diffs)


def run(
    num_images: int = 1000, dets_per_image: int = 100, num_classes: int = 4, seed: int = 0, repeats: int = 3
) -> list[dict]:
    """Time the three engines on one random input (median of ``repeats`` runs, same process, one
    after the other); assert their AP figures agree within 1e-9; one row per engine."""
    preds, gts = random_case(num_images, dets_per_image, num_classes, seed, vary=False)
    n_det = sum(len(p[1]) for p in preds)
    n_gt = sum(len(g[1]) for g in gts)
    keys = [*AP_KEYS, *(f"ap50_{c}" for c in range(num_classes))]
    engines = {
        "detection_metrics": lambda: detection_metrics(preds, gts, num_classes, max_det=100),
        "pycocotools": lambda: pycocotools_metrics(preds, gts, num_classes, max_det=100),
        "faster-coco-eval": lambda: _faster_coco_eval_metrics(preds, gts, num_classes, max_det=100),
    }
    results, seconds = {}, {}
    for name, fn in engines.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            results[name] = fn()
            times.append(time.perf_counter() - t0)
        seconds[name] = float(np.median(times))
    ours = results["detection_metrics"]
    rows = []
    for name in engines:
        diff = _max_diff(ours, results[name], keys)
        assert diff <= 1e-9, f"{name} differs from detection_metrics by {diff:g}"
        rows.append({"engine": name, "images": num_images, "detections": n_det, "ground_truths": n_gt,
                     "classes": num_classes, "seconds": round(seconds[name], 4),
                     "x_ours": round(seconds[name] / seconds["detection_metrics"], 2),
                     "max_abs_diff_vs_ours": diff, "map": results[name]["map"], "map50": results[name]["map50"]})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--dets", type=int, default=100)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    for row in run(args.images, args.dets, args.classes, args.seed, args.repeats):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
