"""Benchmark: ``detection_metrics`` against pycocotools (and faster-coco-eval) on one random input.

    python -m study.benchmarks.eval [--images 1000] [--dets 100] [--classes 4] [--seed 0] [--repeats 3]

Prints one JSON line per engine (median seconds, ratio to ours, largest difference from ours) after
asserting that every AP figure agrees within 1e-9. All engines evaluate the same work: area range
"all" and one max-detections cap (pycocotools' default run would also evaluate three more area
ranges and two more caps). Their times include turning the per-image arrays into COCO dicts, which
is what using them costs. The reference and the random input: trainables/metrics/coco_reference.py
(the tests compare with it too). Needs the dev extras (pycocotools, faster-coco-eval).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence

import numpy as np

from trainables.metrics.coco_reference import (
    AP_KEYS,
    Gts,
    Preds,
    coco_dicts,
    evaluate_ap,
    pycocotools_metrics,
    random_case,
)
from trainables.metrics.detection import detection_metrics


def _faster_coco_eval_metrics(preds: Preds, gts: Gts, num_classes: int, max_det: int) -> dict[str, float]:
    """faster-coco-eval's COCOeval_faster, configured like the reference (for the timing table)."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt_dict, dets = coco_dicts(preds, gts, num_classes)
    coco_gt = COCO(gt_dict)
    return evaluate_ap(COCOeval_faster(coco_gt, coco_gt.loadRes(dets), "bbox"), num_classes, max_det)


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
