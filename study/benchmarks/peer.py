"""Benchmark: the peer side by side. Ultralytics YOLOv8n and YOLOv8n-cls beside our arms, one table.

    python -m study.bench peer [--data DATA.yaml] [--train-splits train test] [--epochs 30] [--imgsz 320]
        [--batch 16] [--arms shared/gradnorm dual] [--set KEY=VALUE ...] [--threads N]

Needs the optional extra: ``pip install -e ".[peer]"`` (ultralytics; imported here only). Every model
trains from scratch (YOLOv8n / YOLOv8n-cls built from their yaml, no weights) on exactly the frames
and split ``bench recipe`` uses (``recipe.prepare``: the same decode, letterbox and patient split),
written once as an Ultralytics-format copy in the tool's cache folder (lossless PNGs of the
letterboxed frames; boxes as ``cls cx cy w h``; one folder per view for the classifier). Ultralytics
runs offline: its settings live in the cache folder, ``YOLO_OFFLINE`` is set, its font download is
switched off, plots are off and AMP is off (its AMP check downloads weights). Both peers are then
scored by this project's metrics (COCO-exact mAP, view accuracy) on the same validation frames.

Epoch choice: a peer's numbers are its ``best.pt`` (Ultralytics keeps the epoch with the best
validation fitness); our arms are shown with the same rule (``recipe.peer_style``: each task's epoch
by that task's own validation score). Both select on the split they score, so both are optimistic
in the same way; on a patient split the frames scored are of patients no model trained on.
Seconds per epoch are the median training seconds of an epoch (validation excluded), each model at
the same torch thread count, measured in this one run: their ratio is the cost ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from study.benchmarks import recipe
from study.benchmarks.common import emit
from study.cli import parse_set
from study.errors import UsageError
from trainables.data import cache
from trainables.data.types import DecodedData
from trainables.metrics.classification import classification_metrics
from trainables.metrics.detection import detection_metrics
from trainables.wording import counted

DEFAULT_ARMS = ("shared/gradnorm", "dual")
DET_MODEL, CLS_MODEL = "yolov8n.yaml", "yolov8n-cls.yaml"
# Ultralytics' own validation settings: the rule behind its reported mAP
PEER_CONF, PEER_IOU, PEER_MAX_DET = 0.001, 0.7, 300


# -- the Ultralytics-format copy ----------------------------------------------------------------------
def copy_key(data: DecodedData) -> str:
    """The copy's folder name: the decoded data's fingerprint and the split's train and val frames."""
    split = hashlib.sha1(data.splits["train"].astype(np.int64).tobytes() + b"|" +
                         data.splits["val"].astype(np.int64).tobytes()).hexdigest()[:12]
    return f"{data.fingerprint[:16]}-{split}"


def export_copy(data: DecodedData, root: Path) -> tuple[Path, Path]:
    """Write ``data``'s train and val frames as Ultralytics datasets under ``root``; (detection
    data.yaml, classification folder). Frames are the letterboxed (S, S) arrays the arms train on,
    as PNG (lossless, so the peer sees the same pixels); a label line per box ``cls cx cy w h``
    normalised to the frame; the classifier's copy is ``{train,val}/<view>/<n>.png``. Written once
    per dataset fingerprint (a finished copy has a ``done`` marker)."""
    det, cls = root / "det", root / "cls"
    if (root / "done").is_file():
        return det / "data.yaml", cls
    shutil.rmtree(root, ignore_errors=True)  # what an interrupted export left
    size = data.imgsz
    for split, folder in (("train", "train"), ("val", "val")):
        (det / folder / "images").mkdir(parents=True, exist_ok=True)
        (det / folder / "labels").mkdir(parents=True, exist_ok=True)
        for view in data.view_names:
            (cls / folder / view).mkdir(parents=True, exist_ok=True)
        indices = data.splits[split]
        boxes = data.boxes_of(indices)  # (K, 6) [position, class, x1, y1, x2, y2] letterboxed pixels
        for pos, i in enumerate(indices):
            name = f"{pos:06d}.png"
            image = Image.fromarray(np.ascontiguousarray(data.images[i].transpose(1, 2, 0)))  # (S, S, 3) RGB
            image.save(det / folder / "images" / name)
            link = cls / folder / data.view_names[int(data.views[i])] / name
            try:
                link.hardlink_to(det / folder / "images" / name)  # one copy of the pixels on disk
            except OSError:  # a file system without hard links
                shutil.copyfile(det / folder / "images" / name, link)
            rows = boxes[boxes[:, 0] == pos]
            xyxy = rows[:, 2:6] / size
            lines = [f"{int(c)} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"
                     for c, (x1, y1, x2, y2) in zip(rows[:, 1], xyxy, strict=True)]
            (det / folder / "labels" / f"{pos:06d}.txt").write_text("".join(f"{line}\n" for line in lines))
    spec = {"path": str(det), "train": "train/images", "val": "val/images",
            "names": dict(enumerate(data.names))}
    (det / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (root / "done").write_text("")
    return det / "data.yaml", cls


# -- Ultralytics, offline -----------------------------------------------------------------------------
def offline_ultralytics(home: Path) -> Any:
    """Import ultralytics with its settings in ``home`` and every network touch switched off; the module."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(home)  # its settings.json and font folder: never ~/.config
    os.environ["YOLO_OFFLINE"] = "1"  # its is_online() answers False: no hub, no update or pip checks
    try:
        import ultralytics
        from ultralytics.data import utils as data_utils
        from ultralytics.utils import SETTINGS
    except ImportError:
        raise UsageError("the peer benchmark needs Ultralytics: pip install -e \".[peer]\"") from None
    wanted = {"sync": False, "wandb": False, "mlflow": False, "tensorboard": False, "comet": False,
              "clearml": False, "dvc": False, "neptune": False, "raytune": False, "vscode_msg": False,
              "datasets_dir": str(home / "datasets"), "weights_dir": str(home / "weights"),
              "runs_dir": str(home / "runs")}
    SETTINGS.update({k: v for k, v in wanted.items() if k in SETTINGS})  # keys differ across its releases
    # check_det_dataset asks for Arial.ttf (labels in plots) and downloads it when absent: plots are off
    data_utils.check_font = lambda *args, **kwargs: None
    # its import replaces PIL.Image.open for every caller in the process (on an unidentified file it tries
    # to install a HEIF plugin): give Pillow its own back; the copy is PNG
    from PIL import Image as PILImage
    from ultralytics.utils import patches

    PILImage.open = patches._image_open
    return ultralytics


def train_peer(model_yaml: str, data: str, name: str, epochs: int, imgsz: int, batch: int, threads: int,
               seed: int, project: Path) -> tuple[Any, list[float]]:
    """Train one Ultralytics model from scratch on CPU; (the model with its best.pt loaded, seconds of each
    epoch's training). Torch's thread count is set to ``threads`` when training starts (Ultralytics
    resets it for CPU training), so every model of the table trains at the same thread count."""
    from ultralytics import YOLO

    model = YOLO(model_yaml)
    started: dict[str, float] = {}
    seconds: list[float] = []

    def on_train_start(trainer: Any) -> None:
        torch.set_num_threads(threads)

    def on_epoch_start(trainer: Any) -> None:
        started["t"] = time.perf_counter()

    def on_epoch_end(trainer: Any) -> None:  # after the epoch's last step, before its validation
        seconds.append(time.perf_counter() - started["t"])
        print(f"  {name} epoch {len(seconds)}: {seconds[-1]:.0f}s", file=sys.stderr, flush=True)

    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_train_epoch_start", on_epoch_start)
    model.add_callback("on_train_epoch_end", on_epoch_end)
    model.train(data=data, epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=0, seed=seed,
                pretrained=False, amp=False, plots=False, project=str(project), name=name, exist_ok=True,
                verbose=False)
    best = project / name / "weights" / "best.pt"
    return YOLO(str(best if best.is_file() else project / name / "weights" / "last.pt")), seconds


def score_detector(model: Any, data: DecodedData, images: list[Path]) -> dict[str, float]:
    """This project's COCO-exact detection metrics of an Ultralytics detector on the val frames."""
    preds = []
    for result in model.predict([str(p) for p in images], imgsz=data.imgsz, conf=PEER_CONF, iou=PEER_IOU,
                                max_det=PEER_MAX_DET, device="cpu", verbose=False, stream=True):
        b = result.boxes
        preds.append((b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64)))
    val = data.splits["val"]
    gt = data.boxes_of(val)
    gts = [(gt[gt[:, 0] == pos, 2:6], gt[gt[:, 0] == pos, 1].astype(np.int64)) for pos in range(len(val))]
    return detection_metrics(preds, gts, data.num_classes, names=list(data.names), max_det=PEER_MAX_DET)


def score_classifier(model: Any, data: DecodedData, images: list[Path]) -> dict[str, float]:
    """This project's view metrics of an Ultralytics classifier on the val frames (its class order
    is the sorted folder names: mapped back to ours by name)."""
    ours = {name: i for i, name in enumerate(data.view_names)}
    predicted = []
    for result in model.predict([str(p) for p in images], imgsz=data.imgsz, device="cpu", verbose=False,
                                stream=True):
        predicted.append(ours[result.names[int(result.probs.top1)]])
    truth = data.views[data.splits["val"]]
    return classification_metrics(truth, np.array(predicted), data.num_views, names=list(data.view_names))


# -- the table ----------------------------------------------------------------------------------------
def peer_rows(det: dict[str, float], cls: dict[str, float], det_s: list[float], cls_s: list[float],
              n_val: int, epochs: int) -> list[dict[str, Any]]:
    nan = math.nan
    return [
        {"bench": "peer", "arm": "YOLOv8n", "epochs": epochs, "map50": round(det["map50"], 4),
         "map": round(det["map"], 4), "view_accuracy": nan, "view_acc_ci95": [nan, nan],
         "epoch_s": round(statistics.median(det_s), 2) if det_s else nan},
        {"bench": "peer", "arm": "YOLOv8n-cls", "epochs": epochs, "map50": nan, "map": nan,
         "view_accuracy": round(cls["accuracy"], 4),
         "view_acc_ci95": recipe.view_accuracy_interval(cls["accuracy"], n_val),
         "epoch_s": round(statistics.median(cls_s), 2) if cls_s else nan},
    ]


def our_rows(rows: list[dict[str, Any]], n_val: int) -> list[dict[str, Any]]:
    """Our arms as the peer is picked: each task's epoch by its own validation score (``peer_style``)."""
    out = []
    for r in rows:
        p = r["peer_style"]
        out.append({"bench": "peer", "arm": r["arm"], "epochs": r["epochs"], "map50": p["det.map50"],
                    "map": p["det.map"], "view_accuracy": p["view.accuracy"],
                    "view_acc_ci95": recipe.view_accuracy_interval(p["view.accuracy"], n_val),
                    "epoch_s": r["epoch_s"]})
    return out


def print_table(rows: list[dict[str, Any]], threads: int) -> None:
    def cell(v: float, width: int = 12, fmt: str = ".3f") -> str:
        return f"{'—' if not math.isfinite(v) else format(v, fmt):>{width}}"

    print(f"{'model':<18}{'mAP@.5':>12}{'mAP@.5:.95':>12}{'view acc':>12}{'view acc 95% CI':>18}{'s/epoch':>10}")
    for r in rows:
        low, high = r["view_acc_ci95"]
        interval = "—" if not math.isfinite(low) else f"[{low:.3f}, {high:.3f}]"
        print(f"{r['arm']:<18}{cell(r['map50'])}{cell(r['map'])}{cell(r['view_accuracy'])}{interval:>18}"
              f"{cell(r['epoch_s'], 10, '.1f')}")
    by = {r["arm"]: r["epoch_s"] for r in rows}
    pair = by["YOLOv8n"] + by["YOLOv8n-cls"]
    ratios = ", ".join(f"{arm} {pair / s:.2f}" for arm, s in by.items()
                       if not arm.startswith("YOLOv8") and math.isfinite(s) and s > 0)
    print(f"each model's epoch picked by its own validation score (Ultralytics' best.pt rule; ours: recipe's "
          f"peer_style); s/epoch: median training seconds of an epoch at {counted(threads, 'torch thread')}, this run")
    if ratios:
        print(f"cost ratio, peer pair (YOLOv8n + YOLOv8n-cls, {pair:.1f} s/epoch) / ours: {ratios}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.bench peer", description=__doc__.split("\n\n")[0])
    recipe.add_run_arguments(p, DEFAULT_ARMS)
    p.add_argument("--threads", type=int, default=1, help="torch threads of every model (default 1)")
    p.add_argument("--seed", type=int, default=0, help="the peers' training seed (ours: train.seed)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.imgsz % 32 or args.threads < 1:
        raise UsageError("--epochs and --threads must be at least 1 and --imgsz a multiple of 32 (the peer's stride)")
    home = cache.cache_dir() / "peer"
    offline_ultralytics(home / "ultralytics")  # before training ours: a missing extra fails in a second
    torch.set_num_threads(args.threads)
    source = args.data if args.data == "synthetic" else str(Path(args.data).expanduser().resolve())
    base, data = recipe.prepare(source, args.train_splits, args.epochs, args.imgsz, args.batch, "n", args.arms,
                                parse_set(args.set))
    copy_root = home / "data" / copy_key(data)
    det_yaml, cls_folder = export_copy(data, copy_root)
    print(f"peer: Ultralytics-format copy of those frames in {copy_root}", file=sys.stderr, flush=True)
    ours = recipe.train_arms(data, base, args.arms, args.epochs, None)
    runs = home / "runs"
    det_model, det_s = train_peer(DET_MODEL, str(det_yaml), "yolov8n", args.epochs, args.imgsz, args.batch,
                                  args.threads, args.seed, runs)
    cls_model, cls_s = train_peer(CLS_MODEL, str(cls_folder), "yolov8n-cls", args.epochs, args.imgsz, args.batch,
                                  args.threads, args.seed, runs)
    val_images = sorted((det_yaml.parent / "val" / "images").glob("*.png"))
    n_val = len(data.splits["val"])
    rows = our_rows(ours, n_val) + peer_rows(score_detector(det_model, data, val_images),
                                             score_classifier(cls_model, data, val_images), det_s, cls_s,
                                             n_val, args.epochs)
    emit(rows)
    print_table(rows, args.threads)
    return 0
