"""Train and evaluate one configuration: ``fit(config, data, report)``. Imports no Ray.

Every epoch ends with one flat metrics dict (the row of ``epochs.parquet``) handed to ``report``
together with a checkpoint state (plain tensors and values: it loads with ``weights_only=True``).
A run resumed from such a state continues exactly: the shuffling, augmentation and dropout RNGs
are re-seeded from (seed, epoch) at the start of every epoch, so nothing random carries over.

Its keys (NaN where a task is absent) are declared, with their groups, labels and how the study
summarises them, in one place: ``trainables/metrics/names.py``; a key missing there is not recorded.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainables.batchnorm import recalibrate_batchnorm
from trainables.checkpoint_format import CHECKPOINT_FORMAT
from trainables.config import TrialConfig
from trainables.data.clips import clip_ids
from trainables.data.loader import iterate_batches
from trainables.data.types import DecodedData
from trainables.interference import gradient_interference
from trainables.learner import Learner
from trainables.metrics import efficiency, names
from trainables.metrics.classification import classification_metrics, clip_view_metrics
from trainables.metrics.detection import detection_metrics
from trainables.optim import lr_factor
from trainables.postprocess import postprocess
from trainables.precision import Numerics

Report = Callable[[dict[str, Any], dict[str, Any]], None]


@dataclass
class FitResult:
    status: str  # "finished" or "diverged"
    reason: str
    history: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def objective(metrics: dict[str, float], arch: str) -> float:
    """The study's default single objective: the mean of the task scores the architecture has.

    Detection scores ``val.map`` (COCO mAP@0.5:0.95), classification ``val.view_accuracy``; a
    multi-task model gets ``0.5 * map + 0.5 * view_accuracy``, a single-task baseline its own score.
    """
    scores = []
    if arch != "cls_only":
        scores.append(metrics[names.TASK_SCORE["det"]])
    if arch != "det_only":
        scores.append(metrics[names.TASK_SCORE["view"]])
    return float(np.mean(scores))


def fit(
    cfg: TrialConfig,
    data: DecodedData,
    report: Report | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool = False,
) -> FitResult:
    """Train ``cfg`` on ``data``'s train split, validate on its val split every epoch.

    report(metrics, checkpoint) is called once per epoch. ``resume`` is a checkpoint state from an
    earlier report; training continues with the epoch after it.
    """
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    view_weights = _view_class_weights(data, device) if cfg.loss.view_class_weights else None
    learner = Learner(cfg, data.num_classes, data.num_views, device, view_class_weights=view_weights)
    numerics = learner.numerics
    if learner.transfer is not None and resume is None:
        print(learner.transfer.summary(), file=sys.stderr, flush=True)

    steps_per_epoch = math.ceil(len(data.splits["train"]) / cfg.data.batch)
    total_steps = steps_per_epoch * cfg.train.epochs
    warmup_steps = round(cfg.optim.warmup_epochs * steps_per_epoch)

    history: list[dict[str, Any]] = []
    start_epoch, step, train_seconds, static_eff = 0, 0, 0.0, None
    factor = lr_factor(max(step - 1, 0), total_steps, warmup_steps, cfg.optim)
    if resume is not None:
        _check_checkpoint(resume, cfg, numerics)
        learner.load_state_dict(resume)
        start_epoch, step = int(resume["epoch"]), int(resume["step"])
        train_seconds = float(resume["train_seconds"])
        history = list(resume["history"])
        static_eff = dict(resume["static_eff"])

    progress = progress and sys.stderr.isatty()  # a redrawn bar in a terminal; logs get the epoch rows only
    efficiency.reset_peak_memory(device)
    status, reason = "finished", ""
    for epoch in range(start_epoch, cfg.train.epochs):
        torch.manual_seed(cfg.train.seed * 100_003 + epoch)  # dropout etc.: a function of (seed, epoch)
        shuffle = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + epoch)  # order and augmentation
        learner.model.train()
        sums: dict[str, float] = {}
        count, seen, data_time = 0, 0, 0.0
        t0 = time.perf_counter()
        batches = iterate_batches(
            data, "train", cfg.data.batch, shuffle=True, generator=shuffle, device=device,
            augment=cfg.data if cfg.data.augment else None,
            mosaic=cfg.data.mosaic and epoch < cfg.train.epochs - cfg.data.close_mosaic,
        )
        while True:
            # what the batches cost beside the steps (conversion, augmentation; on CUDA only their launches)
            t_data = time.perf_counter()
            batch = next(batches, None)
            data_time += time.perf_counter() - t_data
            if batch is None:
                break
            images, targets, views, _ = batch
            factor = lr_factor(step, total_steps, warmup_steps, cfg.optim)
            out = learner.step(images, targets, views, factor)
            if not out.finite:
                status = "diverged"
                reason = f"non-finite loss at epoch {epoch + 1}, step {step + 1}: " + ", ".join(
                    f"{t}={v:.4g}" for t, v in zip(learner.tasks, out.losses.tolist(), strict=True))
                break
            step += 1
            count += 1
            seen += images.shape[0]
            for k, v in out.parts.items():
                sums[f"loss.{k}"] = sums.get(f"loss.{k}", 0.0) + float(v)
            for t, v, w in zip(learner.tasks, out.losses.tolist(), out.weights.tolist(), strict=True):
                if t not in out.parts:  # "view" is both a task and a loss part: count it once
                    sums[f"loss.{t}"] = sums.get(f"loss.{t}", 0.0) + v
                sums[f"weight.{t}"] = sums.get(f"weight.{t}", 0.0) + w
            if progress:
                _progress(epoch, cfg.train.epochs, count, steps_per_epoch, sums, t0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t0
        train_seconds += train_time
        if progress:
            sys.stderr.write("\n")
        if status == "diverged":
            metrics = failure_metrics(epoch + 1, step, status, reason)
            history.append(metrics)
            if report is not None:
                report(metrics, {})
            break

        eval_model = learner.eval_model
        t1 = time.perf_counter()
        if cfg.train.bn_recalibration_batches > 0:  # the statistics of the activations eval will see
            with numerics.autocast():
                recalibrate_batchnorm(eval_model, _calibration_images(data, cfg, device, epoch, numerics))
        metrics = {"epoch": epoch + 1, "step": step, "status": "running", "reason": "",
                   "resumed_from_epoch": start_epoch}
        metrics["lr"] = learner.base_lr("main") * factor  # the trunk's (and detector's) rate at the last step
        metrics["lr_cls"] = cfg.optim.cls_lr * factor if "view" in learner.tasks else math.nan
        for key in names.keys("loss", "weight"):
            metrics[key] = sums[key] / max(count, 1) if key in sums else math.nan
        metrics.update(gradient_interference(learner.model, data, cfg, device, learner.tasks,
                                             learner.view_class_weights, numerics))
        metrics.update(evaluate(eval_model, data, "val", cfg, device, numerics))
        metrics[names.OBJECTIVE] = objective(metrics, cfg.arch)
        eval_time = time.perf_counter() - t1
        if static_eff is None:
            static_eff = {**_static_efficiency(eval_model, cfg, numerics), "eff.balanced": float(learner.balanced),
                          **numerics.as_row()}
        metrics.update(static_eff)
        metrics["eff.peak_mem_mb"] = efficiency.peak_memory_mb(device)
        metrics["time.epoch_s"] = train_time
        metrics["time.data_s"] = data_time
        metrics["time.train_s"] = train_seconds
        metrics["time.eval_s"] = eval_time
        metrics["throughput.img_per_s"] = seen / train_time if train_time > 0 else math.nan
        metrics["time.total_s"] = sum(h.get("time.epoch_s", 0) + h.get("time.eval_s", 0) for h in history) + (
            train_time + eval_time)
        if epoch + 1 == cfg.train.epochs:
            metrics["status"] = "finished"
        history.append(metrics)
        if report is not None:
            state = {
                "format": CHECKPOINT_FORMAT,
                "arch": cfg.arch,
                "config": cfg.to_flat(),
                "num_classes": data.num_classes,
                "num_views": data.num_views,
                "names": list(data.names),
                "view_names": list(data.view_names),
                "epoch": epoch + 1,
                "step": step,
                "train_seconds": train_seconds,
                **learner.state_dict(),
                "history": history,
                "static_eff": static_eff,
                "numerics": numerics.as_state(),  # evaluate and predict run the model as it trained
            }
            report(metrics, state)
    return FitResult(status=status, reason=reason, history=history, model=learner.eval_model)


@dataclass
class SplitOutputs:
    """What a model produced on one split, frame by frame in the order scored.

    indices: (N,) int64 positions of the frames in the data. preds: one ``(boxes (n, 4) xyxy px, scores (n,),
    labels (n,))`` per frame after NMS, and gts: one ``(boxes (m, 4), labels (m,))`` per frame, where the model has a
    detector (empty lists without). view_true (N,) int64 and view_prob (N, V) float32 softmax, where it has a view
    head (None without)."""

    indices: np.ndarray
    preds: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list)
    gts: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    view_true: np.ndarray | None = None
    view_prob: np.ndarray | None = None


@torch.no_grad()
def evaluate(model: nn.Module, data: DecodedData, split: str, cfg: TrialConfig, device: torch.device,
             numerics: Numerics | None = None) -> dict:
    """Validation metrics of ``model`` on one split: ``val.*`` keys (detection and/or view; with a view
    head also the view per clip, ``val.view_clip_accuracy``, ``val.n_clips`` and what the clips are, from the file
    names: trainables/metrics/classification.py, ``clip_view_metrics``).

    ``numerics``: how to run the model (a checkpoint's: ``precision.checkpoint_numerics``); by default the
    config's, resolved on ``device``. Outputs are cast to float32 before post-processing and metrics."""
    return score_split(predict_split(model, data, split, cfg, device, numerics), data, cfg)


@torch.no_grad()
def predict_split(model: nn.Module, data: DecodedData, split: str, cfg: TrialConfig, device: torch.device,
                  numerics: Numerics | None = None) -> SplitOutputs:
    """Run ``model`` over one split, unaugmented: its detections (post-processed with the config's thresholds) and
    view probabilities per frame, for ``score_split`` (and, where a checkpoint is scored, the jet questions:
    study/heldout/scoring.py)."""
    numerics = numerics or Numerics.resolve(cfg.train.precision, cfg.train.memory_format, device)
    model.eval()
    preds, gts, view_true, view_prob, order = [], [], [], [], []
    for images, targets, views, indices in iterate_batches(
        data, split, max(cfg.data.batch, 32), shuffle=False, generator=None, device=device, augment=None
    ):
        with numerics.autocast():
            det_out, cls_logits = model(numerics.images(images))
        order.append(indices)
        if det_out is not None:
            det_out = [d.float() for d in det_out]
            preds.extend(
                tuple(t.cpu() for t in p)
                for p in postprocess(det_out, model.detect, cfg.train.conf_thres, cfg.train.iou_thres,
                                     cfg.train.max_det)
            )
            targets = targets.cpu()
            for b in range(images.shape[0]):
                rows = targets[targets[:, 0] == b]
                gts.append((rows[:, 2:6], rows[:, 1].long()))
        if cls_logits is not None:
            view_true.append(views.cpu())
            view_prob.append(cls_logits.float().softmax(1).cpu())  # (B, V)
    return SplitOutputs(
        indices=np.concatenate(order) if order else np.zeros(0, np.int64), preds=preds, gts=gts,
        view_true=torch.cat(view_true).numpy() if view_true else None,
        view_prob=torch.cat(view_prob).numpy() if view_prob else None)


def score_split(outputs: SplitOutputs, data: DecodedData, cfg: TrialConfig) -> dict[str, float]:
    """``evaluate``'s metrics of one split's outputs: ``val.*`` keys, NaN where a task is absent."""
    out: dict[str, float] = {}
    prefix = "val."
    if outputs.preds:
        # COCO's cap is 100 detections per image; we keep the engine's max_det in NMS and score with it
        det = detection_metrics(outputs.preds, outputs.gts, data.num_classes, names=list(data.names),
                                max_det=cfg.train.max_det)
        out.update({prefix + k: float(v) for k, v in det.items()})
    else:
        for k in ("map", "map50", "map75", "precision", "recall", "f1"):
            out[prefix + k] = math.nan
    if outputs.view_true is not None and outputs.view_prob is not None:
        truth, probs = outputs.view_true, outputs.view_prob  # (N,), (N, V)
        cls = classification_metrics(truth, probs.argmax(1), data.num_views, names=list(data.view_names))
        out.update({prefix + "view_" + k: float(v) for k, v in cls.items() if isinstance(v, (int, float))})
        # one view per clip where the file names give the clip (<patient>-<clip>-<frame>)
        files = data.files[outputs.indices] if len(data.files) else np.full(len(truth), "")
        clip = clip_view_metrics(clip_ids(files), truth, probs)
        out.update({prefix + k: v for k, v in clip.items()})  # and what the clips are: mixed, single-frame
    else:
        out[prefix + "view_accuracy"] = math.nan
    return out


def _calibration_images(data: DecodedData, cfg: TrialConfig, device: torch.device, epoch: int, numerics: Numerics):
    """The first ``train.bn_recalibration_batches`` training batches of a seeded order, unaugmented, in the
    run's memory format."""
    order = torch.Generator().manual_seed(cfg.train.seed * 3_000_017 + epoch)
    batches = iterate_batches(data, "train", cfg.data.batch, shuffle=True, generator=order, device=device,
                              augment=None)
    for i, (images, _, _, _) in enumerate(batches):
        if i >= cfg.train.bn_recalibration_batches:
            return
        yield numerics.images(images)


def _view_class_weights(data: DecodedData, device: torch.device) -> Tensor:
    """Inverse-frequency weights of the training views, normalised to mean 1."""
    counts = np.bincount(data.views[data.splits["train"]], minlength=data.num_views).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / data.num_views, 0.0)
    return torch.tensor(weights / weights[weights > 0].mean(), dtype=torch.float32, device=device)


def _static_efficiency(model: nn.Module, cfg: TrialConfig, numerics: Numerics) -> dict[str, float]:
    """Figures that do not change during training: parameters, GFLOPs, inference latency (at the run's
    precision and memory format)."""
    device = numerics.device
    counts = efficiency.parameter_counts(model.task_parameters())
    out = {f"eff.params_{k}": float(v) for k, v in counts.items()}
    out["eff.shared_units"] = float(getattr(model, "shared_stages", 0))  # dual and single-task: none shared
    out["eff.gflops"] = efficiency.forward_gflops(model, cfg.data.imgsz, device)
    out["eff.latency_ms_b1"] = efficiency.inference_latency_ms(model, cfg.data.imgsz, 1, device, numerics=numerics)
    out["eff.latency_ms_b32"] = efficiency.inference_latency_ms(model, cfg.data.imgsz, 32, device, repeats=3,
                                                               numerics=numerics)
    return out


# Metrics every report carries, NaN when a run ends early: searchers and schedulers may read any of
# them as an objective, and Ray Tune rejects a result that lacks the metric it optimises.
HEADLINE_METRICS = names.HEADLINE


def failure_metrics(epoch: int, step: int, status: str, reason: str) -> dict[str, Any]:
    """The report of a run that stopped without validating: its status, its reason, NaN headlines."""
    return {"epoch": epoch, "step": step, "status": status, "reason": reason,
            **dict.fromkeys(HEADLINE_METRICS, math.nan)}


def _check_checkpoint(state: dict[str, Any], cfg: TrialConfig, numerics: Numerics) -> None:
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}; retrain")
    if state.get("arch") != cfg.arch:
        raise ValueError(f"checkpoint is for arch={state.get('arch')!r}, config says arch={cfg.arch!r}")
    # a run is trained at one precision: a resume on a machine where ``auto`` resolves otherwise (a retried
    # trial on another node) would mix them silently
    trained = (state.get("numerics") or {}).get("precision")
    if trained is not None and trained != numerics.precision:
        raise ValueError(f"checkpoint trained at {trained}, this run resolves train.precision="
                         f"{cfg.train.precision} to {numerics.precision} on {numerics.device}; "
                         f"set train.precision={trained} to continue it")


def _progress(epoch: int, epochs: int, done: int, total: int, sums: dict[str, float], t0: float) -> None:
    width = 24
    filled = int(width * done / max(total, 1))
    losses = " ".join(f"{k[5:]}={v / done:.3f}" for k, v in sums.items() if k.startswith("loss.") and
                      k[5:] in ("det", "view"))
    elapsed = time.perf_counter() - t0
    sys.stderr.write(
        f"\repoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
        f"{losses} {elapsed:.0f}s"
    )
    sys.stderr.flush()
