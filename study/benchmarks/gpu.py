"""Benchmark (CUDA): training img/s with bf16 autocast, GPU utilisation, and trials per GPU by memory.

    python -m study.bench gpu [--imgsz 320] [--sizes n s] [--batches 16 64] [--archs shared]
                              [--balancer gradnorm] [--steps 20] [--warmup 5] [--min-seconds 3]
                              [--headroom 0.1] [--device cuda]

Each (arch, size, batch) is measured alone, one after another, in this process: a fresh
``Learner`` (the engine's own training step: forward under bf16 autocast (``train.precision=bf16``),
task losses, balancer backward, clip, optimizer step) on one random batch already on the device;
``--warmup`` untimed steps, then at least ``--steps`` timed steps and ``--min-seconds`` seconds,
each step synchronised. Printed per row:

  step_s, img_per_s     median seconds per step and batch / step_s (the model only: data loading
                        and validation are not included; ``augment_ms`` is the batch's
                        augmentation on the device, timed apart)
  util_pct_*            ``nvidia-smi`` utilization.gpu samples (every 0.2 s) taken during the timed
                        steps: the share of time a kernel was running (absent without nvidia-smi)
  peak_alloc_mib        ``torch.cuda.max_memory_allocated`` over the row: the trial's tensors
  peak_reserved_mib     ``torch.cuda.max_memory_reserved``: what the caching allocator took from the GPU
  context_mib           the CUDA context of one process (each Ray trial is its own process)
  trials_per_gpu        floor((1 - headroom) * total / (peak_reserved + context)): concurrent
                        trials that fit by memory, keeping ``--headroom`` of the card free for
                        fragmentation and the validation pass (not measured here); run the study
                        with ``--gpus-per-trial`` = ``gpus_per_trial`` to pack that many.
                        Memory is only the first limit: when one trial already keeps the GPU
                        busy (util near 100%), packing more trials shares the same compute.

Without a CUDA device it prints ``{"bench": "gpu", "skipped": "no CUDA device"}`` and exits 0;
``--device cpu`` runs the same code on the CPU (a dry run of the script; no memory figures).
Imports torch and the project only (no Ray, no Optuna): it runs on a bare GPU box.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import shutil
import subprocess
import threading
import time
from typing import Any

import torch

from study.benchmarks.common import NUM_CLASSES, NUM_VIEWS, emit, make_batch, median, shortest_warmups, sync
from study.cli import ArgumentParser
from trainables.config import DataConfig, TrialConfig
from trainables.data.augment import augment_batch
from trainables.learner import Learner

MIB = 2**20
UTIL_PERIOD_S = 0.2


class UtilisationSampler:
    """Samples ``nvidia-smi``'s utilization.gpu of one GPU in a background thread while active."""

    def __init__(self, gpu: str) -> None:
        self.command = ["nvidia-smi", f"--id={gpu}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("nvidia-smi") is not None

    def read(self) -> float | None:
        try:
            out = subprocess.run(self.command, capture_output=True, text=True, timeout=5, check=True).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def _loop(self) -> None:
        while not self._stop.wait(UTIL_PERIOD_S):
            value = self.read()
            if value is not None:
                self.samples.append(value)

    def __enter__(self) -> UtilisationSampler:
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def nvidia_smi_id(device: torch.device) -> str:
    """The ``nvidia-smi --id`` of a torch CUDA device (CUDA_VISIBLE_DEVICES renumbers devices)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[index] if index < len(visible) else str(index)


def context_mib(device: torch.device) -> float:
    """Device memory the process holds beyond its tensors: the CUDA context (plus cuBLAS/cuDNN
    workspaces after the first steps). ``mem_get_info`` counts every process on the card, so this
    is exact only on a card this process has to itself."""
    free, total = torch.cuda.mem_get_info(device)
    return (total - free - torch.cuda.memory_reserved(device)) / MIB


def time_steps(learner: Learner, batch: tuple[torch.Tensor, ...], steps: int, warmup: int, min_seconds: float,
               device: torch.device, sampler: UtilisationSampler | None) -> list[float]:
    """Seconds per synchronised step, for at least ``steps`` steps and ``min_seconds`` seconds."""
    images, targets, views = batch
    for _ in range(warmup):
        learner.step(images, targets, views)
    sync(device)
    times: list[float] = []
    with sampler if sampler is not None else contextlib.nullcontext():
        start = time.perf_counter()
        while len(times) < steps or time.perf_counter() - start < min_seconds:
            t0 = time.perf_counter()
            learner.step(images, targets, views)
            sync(device)
            times.append(time.perf_counter() - t0)
    return times


def augment_ms(batch: tuple[torch.Tensor, ...], device: torch.device, repeats: int = 10) -> float:
    """Median milliseconds of ``augment_batch`` (default ranges) on the batch, on its device."""
    images, targets, _ = batch
    cfg, gen = DataConfig(), torch.Generator().manual_seed(0)
    times = []
    for i in range(repeats + 2):
        sync(device)
        t0 = time.perf_counter()
        augment_batch(images, targets, cfg, gen)
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return median(times) * 1000


def measure(arch: str, size: str, batch: int, imgsz: int, balancer: str, device: torch.device, steps: int,
            warmup: int, min_seconds: float, headroom: float, sampler: UtilisationSampler | None) -> dict[str, Any]:
    cuda = device.type == "cuda"
    balancer = balancer if arch == "shared" else "equal"  # no shared weights to balance
    row: dict[str, Any] = {"bench": "gpu", "arch": arch, "size": size, "batch": batch, "imgsz": imgsz,
                           "balancer": balancer}
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    cfg = TrialConfig.from_partial({
        "arch": arch, "model.size": size, "data.imgsz": imgsz, "data.batch": batch, "train.device": str(device),
        "train.precision": "bf16" if cuda else "auto", "balancer.name": balancer,
        **shortest_warmups(balancer),  # every timed step does the balancer's full work
    })
    learner = None
    try:
        torch.manual_seed(0)
        learner = Learner(cfg, NUM_CLASSES, NUM_VIEWS, device)
        learner.model.train()
        row.update(learner.numerics.as_row())
        data = make_batch(imgsz, batch, device)
        times = time_steps(learner, data, steps, warmup, min_seconds, device, sampler)
        step_s = median(times)
        row.update({"steps": len(times), "step_s": round(step_s, 4), "img_per_s": round(batch / step_s, 1),
                    "augment_ms": round(augment_ms(data, device), 2)})
        if sampler is not None and sampler.samples:
            row.update({"util_pct_mean": round(sum(sampler.samples) / len(sampler.samples), 1),
                        "util_pct_median": median(sampler.samples), "util_samples": len(sampler.samples)})
        if cuda:
            total = torch.cuda.get_device_properties(device).total_memory / MIB
            peak_alloc = torch.cuda.max_memory_allocated(device) / MIB
            peak_reserved = torch.cuda.max_memory_reserved(device) / MIB
            context = context_mib(device)
            fit = math.floor((1.0 - headroom) * total / (peak_reserved + context))
            row.update({"peak_alloc_mib": round(peak_alloc, 1), "peak_reserved_mib": round(peak_reserved, 1),
                        "context_mib": round(context, 1), "total_mib": round(total, 1), "headroom": headroom,
                        "trials_per_gpu": fit, "trials_per_gpu_naive": math.floor(total / peak_alloc),
                        "gpus_per_trial": round(1.0 / fit, 3) if fit > 0 else None})
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
    finally:
        del learner
    return row


def run(imgsz: int = 320, sizes: tuple[str, ...] = ("n", "s"), batches: tuple[int, ...] = (16, 64),
        archs: tuple[str, ...] = ("shared",), balancer: str = "gradnorm", steps: int = 20, warmup: int = 5,
        min_seconds: float = 3.0, headroom: float = 0.1, device: str = "cuda") -> list[dict[str, Any]]:
    dev = torch.device(device)
    header: dict[str, Any] = {"bench": "gpu", "device": str(dev), "torch": torch.__version__}
    sampler = None
    if dev.type == "cuda":
        torch.cuda.init()
        header.update({"gpu": torch.cuda.get_device_name(dev),
                       "bf16_supported": torch.cuda.is_bf16_supported(),
                       "nvidia_smi": UtilisationSampler.available()})
        if UtilisationSampler.available():
            sampler = UtilisationSampler(nvidia_smi_id(dev))
    else:
        header["threads"] = torch.get_num_threads()
    rows = [header]
    emit([header])
    for arch in archs:
        for size in sizes:
            for batch in batches:
                row = measure(arch, size, batch, imgsz, balancer, dev, steps, warmup, min_seconds, headroom, sampler)
                emit([row])
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m study.bench gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--sizes", nargs="+", default=["n", "s"], choices=["n", "s"])
    p.add_argument("--batches", nargs="+", type=int, default=[16, 64])
    p.add_argument("--archs", nargs="+", default=["shared"], choices=["shared", "dual", "det_only", "cls_only"])
    p.add_argument("--balancer", default="gradnorm", help="balancer of the shared arch (default gradnorm)")
    p.add_argument("--steps", type=int, default=20, help="at least this many timed steps per row")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--min-seconds", type=float, default=3.0, help="time each row at least this long")
    p.add_argument("--headroom", type=float, default=0.1, help="fraction of GPU memory kept free (default 0.1)")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        emit([{"bench": "gpu", "skipped": "no CUDA device"}])
        return 0
    run(args.imgsz, tuple(args.sizes), tuple(args.batches), tuple(args.archs), args.balancer, args.steps,
        args.warmup, args.min_seconds, args.headroom, args.device)
    return 0
