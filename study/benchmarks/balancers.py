"""Benchmark: one training step of every balancer, relative to ``equal``, on the shared model.

    python -m study.benchmarks.balancers [--imgsz 320] [--batch 16] [--size n] [--steps 5] [--warmup 2]
                                         [--device cpu] [--threads 0] [--no-memory]

A step is what the engine does: split forward, task losses, ``balancer.backward``, gradient clip,
optimizer step, ``after_step``. All strategies are timed in one process, round-robin (one step of
each in turn), so drifts in machine load hit them alike; each has its own identically initialised
model and sees the same random batch. Strategies with a warm-up (GradNorm's L(0), DWA's windows)
get the shortest one, so every timed step does the strategy's full work. Prints one JSON line per
strategy: median step seconds, ratio to ``equal``, and peak memory — CUDA: peak allocated bytes
during that strategy's steps; CPU: the peak RSS of a fresh process running only that strategy
(one shared process could not attribute its peak), measured from after the imports.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
from torch import Tensor, nn

from trainables.balancing.base import Balancer, SharedGraph
from trainables.balancing.registry import available, build
from trainables.config import TrialConfig
from trainables.losses import task_losses
from trainables.models.build import build_model

NUM_CLASSES, NUM_VIEWS, BOXES_PER_IMAGE = 4, 4, 2
# Shortest warm-ups, so the timed steps are the strategies' steady-state steps.
HPARAMS = {"warmup_steps": 1, "dwa_window": 1}


def make_batch(imgsz: int, batch: int, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Random images (B, 3, S, S) in [0, 1], targets (K, 6) [batch, class, x1, y1, x2, y2] pixels, views (B,)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, imgsz, imgsz, generator=g)
    k = batch * BOXES_PER_IMAGE
    wh = torch.rand(k, 2, generator=g) * (imgsz / 3) + 8  # (K, 2) boxes 8 px to a third of the image
    xy = torch.rand(k, 2, generator=g) * (imgsz - wh)  # (K, 2) top-left corners inside the image
    index = torch.arange(batch).repeat_interleave(BOXES_PER_IMAGE).float()[:, None]
    cls = torch.randint(0, NUM_CLASSES, (k, 1), generator=g).float()
    targets = torch.cat([index, cls, xy, xy + wh], 1)  # (K, 6)
    views = torch.randint(0, NUM_VIEWS, (batch,), generator=g)
    return images.to(device), targets.to(device), views.to(device)


class Arm:
    """One strategy with its own model and optimizer."""

    def __init__(self, name: str, cfg: TrialConfig, device: torch.device) -> None:
        torch.manual_seed(0)
        self.name = name
        self.cfg = cfg
        self.model = build_model(cfg, NUM_CLASSES, NUM_VIEWS).to(device).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
        hparams = {**{k: v for k, v in vars(cfg.balancer).items() if k != "name"}, **HPARAMS}
        self.balancer: Balancer = build(name, 2, **hparams)

    def step(self, images: Tensor, targets: Tensor, views: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        shared = SharedGraph.split(self.model.trunk(images), self.model.shared_parameters())
        det, logits = self.model.heads(shared.detached)
        _, losses = task_losses(det, logits, targets, views, self.model, self.cfg.loss)
        self.balancer.backward(losses.float(), shared)
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.balancer.after_step(losses.detach().float())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    imgsz: int = 320, batch: int = 16, size: str = "n", steps: int = 5, warmup: int = 2,
    device: str = "cpu", names: list[str] | None = None, memory: bool = True,
) -> list[dict[str, Any]]:
    """Time ``steps`` steps (after ``warmup`` untimed ones) of every strategy; one dict per strategy.

    Keys: name, step_s (median seconds), ratio (to equal's median), and peak memory:
    ``peak_cuda_mb`` on CUDA, ``peak_rss_mb`` (fresh process per strategy, when ``memory``) on CPU.
    """
    dev = torch.device(device)
    names = names or available()
    if "equal" not in names:
        names = ["equal", *names]
    cfg = TrialConfig.from_partial({"arch": "shared", "model.size": size, "data.imgsz": imgsz, "data.batch": batch})
    images, targets, views = make_batch(imgsz, batch, dev)
    arms = [Arm(name, cfg, dev) for name in names]
    for _ in range(warmup):
        for arm in arms:
            arm.step(images, targets, views)
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, float] = dict.fromkeys(names, 0.0)
    for _ in range(steps):
        for arm in arms:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            _sync(dev)
            t0 = time.perf_counter()
            arm.step(images, targets, views)
            _sync(dev)
            times[arm.name].append(time.perf_counter() - t0)
            if dev.type == "cuda":
                peaks[arm.name] = max(peaks[arm.name], torch.cuda.max_memory_allocated(dev) / 2**20)
    base = statistics.median(times["equal"])
    rows = []
    for name in names:
        row: dict[str, Any] = {"name": name, "step_s": round(statistics.median(times[name]), 4)}
        row["ratio"] = round(statistics.median(times[name]) / base, 3)
        if dev.type == "cuda":
            row["peak_cuda_mb"] = round(peaks[name], 1)
        elif memory:
            row["peak_rss_mb"] = _peak_rss_alone(name, imgsz, batch, size, device)
        rows.append(row)
    return rows


def _peak_rss_alone(name: str, imgsz: int, batch: int, size: str, device: str) -> float:
    """Peak RSS (MiB) of a fresh process that builds one arm and runs three steps of it.

    The peak mark is reset after the imports, so this is torch's resident baseline plus the model,
    the batch and the step's own peak.
    """
    cmd = [
        sys.executable, "-m", "study.benchmarks.balancers", "--rss-of", name, "--imgsz", str(imgsz),
        "--batch", str(batch), "--size", size, "--device", device, "--threads", str(torch.get_num_threads()),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0), so import spikes don't count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """VmHWM (peak RSS since the last reset) in MiB; ru_maxrss where /proc is not available."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rss_of(name: str, imgsz: int, batch: int, size: str, device: str) -> float:
    _reset_peak_rss()
    dev = torch.device(device)
    cfg = TrialConfig.from_partial({"arch": "shared", "model.size": size, "data.imgsz": imgsz, "data.batch": batch})
    images, targets, views = make_batch(imgsz, batch, dev)
    arm = Arm(name, cfg, dev)
    for _ in range(3):  # past the one warm-up step: the strategy's full step
        arm.step(images, targets, views)
    return _peak_rss_mb()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", default="n")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-strategy RSS processes (CPU)")
    p.add_argument("--rss-of", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.rss_of:
        print(round(_rss_of(args.rss_of, args.imgsz, args.batch, args.size, args.device), 1))
        return
    rows = run(args.imgsz, args.batch, args.size, args.steps, args.warmup, args.device, memory=not args.no_memory)
    print(json.dumps({"threads": torch.get_num_threads(), "device": args.device, "imgsz": args.imgsz,
                      "batch": args.batch, "size": args.size, "steps": args.steps}))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
