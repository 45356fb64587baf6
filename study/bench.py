"""``python -m study.bench WHAT``: benchmarks that print JSON lines (medians of repeats after warm-up).

  train      training img/s and epoch seconds, shared vs dual vs single-task, n and s sizes
  balancers  step time of every balancer relative to ``equal``, and peak memory
  data       cold decode + cache, warm load, augmentation per batch
  eval       detection metrics vs pycocotools on 1,000 images x 100 detections
  study      a small study's wall time vs its trials' summed compute; memory of N concurrent trials
  gpu        (CUDA only) img/s at batch 16/64 with bf16, utilisation, trials per GPU by memory
  recipe     does the recipe learn: det_only, cls_only, shared + equal / GradNorm and dual trained
             on one data.yaml, best-epoch mAP and view scores side by side
  precision  bf16 + channels-last vs fp32 training of one recipe, paired by seed: score differences with
             95% intervals, and the training-time ratio
  peer       Ultralytics YOLOv8n and YOLOv8n-cls trained on the recipe's frames and split, scored by
             this project's metrics beside our arms, with seconds per epoch (needs the [peer] extra)
  epoch      where one epoch's time goes on real data: training steps, batches, BatchNorm recalibration,
             interference, validation (forward, NMS, metrics), checkpoint; evaluation ways side by side
  rungs      on a FIFO study's files: the rank correlation, per method, between each trial's validation
             objective at epoch e and its best: where ASHA's first rung may rank trials
"""

from __future__ import annotations

import importlib
import sys

from study.cli import run_cli
from study.errors import UsageError

BENCHES = ("train", "balancers", "data", "eval", "study", "gpu", "recipe", "precision", "peer", "rungs", "epoch")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    what, rest = argv[0], argv[1:]
    if what not in BENCHES:
        raise UsageError(f"unknown benchmark {what!r}; choose one of {', '.join(BENCHES)}")
    module = importlib.import_module(f"study.benchmarks.{what}")
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
