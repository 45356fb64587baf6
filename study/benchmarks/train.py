"""Benchmark: training throughput of shared vs dual vs single-task, side by side in one run.

    python -m study.bench train [--imgsz 320] [--batch 16] [--sizes n s] [--steps 5] [--frames 1050] [--profile]
                                [--splits K ...] [--precision fp32 bf16] [--memory-format contiguous channels_last]
                                [--set KEY=VALUE ...]

Every arm is a ``Learner`` (the engine's own training step: forward, task losses, balancer
backward, clip, optimizer step) on the same random batch; arms are timed round-robin. Epoch
seconds are ``ceil(frames / batch)`` median steps: the model's compute only (data loading and
augmentation are measured by ``bench data``, validation is not included). The shared/dual time
ratio is printed next to their forward-FLOP ratio: time should follow compute. ``--splits`` adds a
shared arm per split (``shared@K``: K backbone units shared, ``model.shared_stages``), each with its time
and FLOP ratios to the fully shared arm: the step time across splits should follow forward FLOPs.
``--precision`` / ``--memory-format`` with several values build every arm once per (precision, format)
pair, all timed in the same round-robin, and print each pair's step time relative to the first pair's
(``precision`` rows: ``bf16+channels_last / fp32+contiguous``), so the ratio is measured under one load.
``--set`` changes every arm's config (``model.shared_stages`` the shared arm's only). ``--profile`` then
profiles one step of each arm per convolution (study/benchmarks/train_profile.py): which layers run
below this machine's best measured convolution throughput, and how much of the step they take.

Named for its subcommand (``python -m study.bench train`` imports ``study.benchmarks.train``), hence the name it
shares with study/train.py.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch

from search_spaces.registry import SPLIT_KEY
from study.benchmarks import train_profile
from study.benchmarks.common import (
    NUM_CLASSES,
    NUM_VIEWS,
    add_numerics_args,
    emit,
    make_batch,
    median,
    numerics_variants,
    round_robin,
    variant_label,
)
from study.cli import parse_set
from trainables.config import TrialConfig
from trainables.engine import resolve_device
from trainables.learner import Learner
from trainables.metrics.efficiency import forward_gflops

ARCHS = ("shared", "dual", "det_only", "cls_only")


def build_learners(imgsz: int, batch: int, sizes: tuple[str, ...], dev: torch.device, splits: tuple[int, ...] = (),
                   overrides: dict[str, Any] | None = None,
                   variants: list[dict[str, str]] | None = None, archs: tuple[str, ...] = ARCHS) -> dict[str, Learner]:
    """One Learner per ``arch/size`` (and ``shared@K/size`` per split K), in training mode, from the same seed;
    with several ``variants`` (``train.precision`` / ``train.memory_format`` overrides), one per variant, named
    ``arch/size/precision+format``."""
    overrides = dict(overrides or {})
    split = overrides.pop(SPLIT_KEY, None)  # the shared arm's only: the other architectures share nothing
    learners: dict[str, Learner] = {}
    arms = [(arch, {SPLIT_KEY: split} if arch == "shared" and split is not None else {}) for arch in archs]
    arms += [(f"shared@{k}", {SPLIT_KEY: k}) for k in splits]
    variants = variants or [{}]
    for size in sizes:
        for name, extra in arms:
            for variant in variants:
                cfg = TrialConfig.from_partial({**overrides, "arch": name.partition("@")[0], "model.size": size,
                                                "data.imgsz": imgsz, "data.batch": batch, "train.device": str(dev),
                                                **extra, **variant})
                torch.manual_seed(0)
                learner = Learner(cfg, NUM_CLASSES, NUM_VIEWS, dev)
                key = f"{name}/{size}" + (f"/{variant_label(learner.numerics)}" if len(variants) > 1 else "")
                learners[key] = learner
    for learner in learners.values():
        learner.model.train()
    return learners


def profile_rows(learners: dict[str, Learner], batch_: tuple, step_s: dict[str, float]) -> list[dict[str, Any]]:
    """Per-convolution rows of every arm, against the best convolution throughput measured in the run."""
    images, targets, views = batch_
    by_arch = {name: train_profile.profile_step(lambda lr=lr: lr.step(images, targets, views))
               for name, lr in learners.items()}
    best = train_profile.best_throughput(by_arch)
    rows: list[dict[str, Any]] = []
    for name, groups in by_arch.items():
        rows += train_profile.table(name, groups, step_s[name], best)
    for name, s in train_profile.summarize(by_arch).items():
        rows.append({"bench": "train-profile", "arch": name, "conv_share_of_step": round(s["conv_s"] / step_s[name], 3),
                     "conv_gflops": round(s["conv_gflops"], 3), "conv_gflops_per_s": round(s["gflops_per_s"], 2),
                     "best_gflops_per_s": round(best, 2)})
    return rows


def run(imgsz: int = 320, batch: int = 16, sizes: tuple[str, ...] = ("n", "s"), steps: int = 5, warmup: int = 2,
        frames: int = 1050, device: str = "auto", profile: bool = False, splits: tuple[int, ...] = (),
        overrides: dict[str, Any] | None = None, variants: list[dict[str, str]] | None = None,
        archs: tuple[str, ...] = ARCHS) -> list[dict[str, Any]]:
    dev = resolve_device(device)
    images, targets, views = make_batch(imgsz, batch, dev)
    learners = build_learners(imgsz, batch, sizes, dev, splits, overrides, variants, archs)
    times = round_robin({name: (lambda lr=lr: lr.step(images, targets, views)) for name, lr in learners.items()},
                        repeats=steps, warmup=warmup, device=dev)
    rows = []
    for name, learner in learners.items():
        arch, size = name.split("/")[:2]
        step_s = median(times[name])
        rows.append({
            "bench": "train", "arch": arch, "size": size, "imgsz": imgsz, "batch": batch, "device": str(dev),
            "precision": learner.numerics.precision, "memory_format": learner.numerics.memory_format,
            "shared_stages": int(getattr(learner.model, "shared_stages", 0)),
            "threads": torch.get_num_threads(), "step_s": round(step_s, 4), "img_per_s": round(batch / step_s, 2),
            f"epoch_s_{frames}_frames": round(math.ceil(frames / batch) * step_s, 1),
            "gflops_forward": round(forward_gflops(learner.model, imgsz, dev), 3),
        })
    if variants and len(variants) > 1:
        return rows + precision_ratios(rows, learners)
    by = {(r["arch"], r["size"]): r for r in rows}
    for size in sizes if {"shared", "dual"} <= set(archs) else ():
        shared, dual = by[("shared", size)], by[("dual", size)]
        rows.append({"bench": "train", "ratio": f"shared/dual {size}",
                     "time_ratio": round(shared["step_s"] / dual["step_s"], 3),
                     "flop_ratio": round(shared["gflops_forward"] / dual["gflops_forward"], 3)})
        for k in splits:  # time against FLOPs across splits: 1.0 = the step costs what its FLOPs say
            at = by[(f"shared@{k}", size)]
            time_ratio, flop_ratio = at["step_s"] / shared["step_s"], at["gflops_forward"] / shared["gflops_forward"]
            rows.append({"bench": "train", "ratio": f"shared@{k}/shared {size}", "time_ratio": round(time_ratio, 3),
                         "flop_ratio": round(flop_ratio, 3), "time_per_flop": round(time_ratio / flop_ratio, 3)})
    if profile and dev.type != "cpu":
        rows.append({"bench": "train-profile", "skipped": f"the per-convolution profile times the CPU only ({dev})"})
    elif profile:
        rows += profile_rows(learners, (images, targets, views), {name: median(times[name]) for name in learners})
    return rows


def precision_ratios(rows: list[dict[str, Any]], learners: dict[str, Learner]) -> list[dict[str, Any]]:
    """Each arm's step time in each (precision, format) variant over its first variant's, measured in one run."""
    step = dict(zip(learners, (r["step_s"] for r in rows), strict=True))
    out = []
    arms = dict.fromkeys(name.rsplit("/", 1)[0] for name in learners)
    for arm in arms:
        variants = [name for name in learners if name.rsplit("/", 1)[0] == arm]
        base = variants[0]
        for name in variants[1:]:
            out.append({"bench": "train", "ratio": f"{arm} {name.rsplit('/', 1)[1]} / {base.rsplit('/', 1)[1]}",
                        "time_ratio": round(step[name] / step[base], 3)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.bench train", description=__doc__.split("\n\n")[0])
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sizes", nargs="+", default=["n", "s"], choices=["n", "s"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--frames", type=int, default=1050)
    p.add_argument("--device", default="auto")
    p.add_argument("--profile", action="store_true", help="then a per-convolution profile of one step of each arm")
    p.add_argument("--splits", nargs="+", type=int, default=[], metavar="K",
                   help="also a shared arm sharing K backbone units (model.shared_stages) per K, e.g. 0 1 2 3 4")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config key for every arm (model.shared_stages: the shared arm's)")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS,
                   help="the architectures to time (the shared/dual ratio needs both)")
    add_numerics_args(p)
    args = p.parse_args(argv)
    emit(run(args.imgsz, args.batch, tuple(args.sizes), args.steps, args.warmup, args.frames, args.device,
             args.profile, tuple(args.splits), parse_set(args.set),
             numerics_variants(args.precision, args.memory_format), tuple(args.archs)))
    return 0
