"""Benchmark: one training step of every balancer, relative to ``equal``, on the shared model.

    python -m study.bench balancers [--imgsz 160 320] [--batch 16] [--size n] [--steps 5] [--warmup 2]
                                    [--device cpu] [--threads 0] [--no-memory] [--set KEY=VALUE ...]
                                    [--precision fp32 bf16] [--memory-format contiguous channels_last]
                                    [--only gradnorm ...] [--markdown]

A step is the engine's own ``Learner.step``: split forward, task losses, ``balancer.backward``,
gradient clip, optimizer step, ``after_step``. All strategies are timed in one process, round-robin,
so drifts in machine load hit them alike; each has its own identically initialised model and sees
the same random batch. Strategies with a warm-up (GradNorm's L(0), DWA's windows) get the shortest
one, so every timed step does the strategy's full work. Peak memory: CUDA, the peak allocated during
that strategy's steps; CPU, the peak RSS of a fresh process running only that strategy (one shared
process could not attribute its peak), measured from after the imports, the strategy's own (TorchJD's)
included, whose resident memory an RSS still counts (docs/benchmarks.md#balancers-through-torchjd).
``--set`` changes every strategy's config alike, e.g. ``--set model.shared_stages=2``: the strategies at
that split (with nothing shared, 0, every strategy trains as ``equal`` does). ``--precision`` / ``--memory-format`` with
several values time every strategy once per (precision, format) pair in the same round-robin: ``ratio`` is
to ``equal`` at the same pair, ``ratio_to_first`` to the same strategy at the first pair. Each ``--imgsz``
(default 160 and 320) is one round-robin of its own, one after the other in the same run; ``--markdown``
prints, after the JSON lines, one table row per strategy with its ratio and peak memory at every size side by
side (the table docs/benchmarks.md keeps).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import torch

from study.benchmarks.common import (
    NUM_CLASSES,
    NUM_VIEWS,
    add_numerics_args,
    emit,
    make_batch,
    median,
    numerics_variants,
    round_robin,
    shortest_warmups,
    variant_label,
)
from study.cli import parse_set
from trainables.balancing.registry import available
from trainables.balancing.registry import build as build_balancer
from trainables.config import TrialConfig, fit_balancer, shared_units
from trainables.learner import Learner
from trainables.metrics.efficiency import peak_memory_mb, reset_peak_memory


def learner(name: str, imgsz: int, batch: int, size: str, device: torch.device,
            overrides: dict[str, Any] | None = None) -> Learner:
    torch.manual_seed(0)
    cfg = TrialConfig.from_partial(fit_balancer({
        "arch": "shared", "model.size": size, "data.imgsz": imgsz, "data.batch": batch, **(overrides or {}),
        "balancer.name": name, **shortest_warmups(name),
    }))
    return Learner(cfg, NUM_CLASSES, NUM_VIEWS, device)


def run(imgsz: int | Sequence[int] = (160, 320), batch: int = 16, size: str = "n", steps: int = 5, warmup: int = 2,
        device: str = "cpu", memory: bool = True, overrides: dict[str, Any] | None = None,
        variants: list[dict[str, str]] | None = None, only: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per image size, strategy (and precision / memory-format variant): median step seconds, ratio to
    ``equal`` at that size, peak memory. ``overrides``: flat config keys every strategy's config takes (a
    balancer key: the strategies that declare it); ``variants``: ``train.precision`` / ``train.memory_format``
    overrides, one arm set each; ``only``: these strategies (``equal``, the reference, always)."""
    sizes = [imgsz] if isinstance(imgsz, int) else list(imgsz)
    return [row for px in sizes
            for row in _run_size(px, batch, size, steps, warmup, device, memory, overrides, variants, only)]


def _run_size(imgsz: int, batch: int, size: str, steps: int, warmup: int, device: str, memory: bool,
              overrides: dict[str, Any] | None, variants: list[dict[str, str]] | None,
              only: list[str] | None) -> list[dict[str, Any]]:
    """:func:`run` at one image size: every strategy timed round-robin against ``equal``."""
    dev = torch.device(device)
    names = ["equal", *[n for n in available() if n != "equal" and (not only or n in only)]]
    variants = variants or [{}]
    images, targets, views = make_batch(imgsz, batch, dev)
    arms = {(name, v): learner(name, imgsz, batch, size, dev, {**(overrides or {}), **variant})
            for v, variant in enumerate(variants) for name in names}
    split = shared_units(arms[("equal", 0)].cfg.model)
    times = round_robin({key: (lambda a=a: a.step(images, targets, views)) for key, a in arms.items()},
                        repeats=steps, warmup=warmup, device=dev)
    rows = []
    for (name, v), arm in arms.items():
        step_s = median(times[(name, v)])
        row: dict[str, Any] = {"bench": "balancers", "name": name, "imgsz": imgsz, "batch": batch, "size": size,
                               "threads": torch.get_num_threads(), "shared_stages": split,
                               "precision": arm.numerics.precision, "memory_format": arm.numerics.memory_format,
                               "balanced": arm.balanced, "step_s": round(step_s, 4),
                               "ratio": round(step_s / median(times[("equal", v)]), 3)}
        if len(variants) > 1:
            row["variant"] = variant_label(arm.numerics)
            row["ratio_to_first"] = round(step_s / median(times[(name, 0)]), 3)
        if memory:
            row["peak_mem_mb"] = _peak_alone(name, imgsz, batch, size, device, {**(overrides or {}),
                                                                                 **variants[v]})
        rows.append(row)
    return rows


def _peak_alone(name: str, imgsz: int, batch: int, size: str, device: str, overrides: dict[str, Any]) -> float:
    """Peak memory (MiB) of a fresh process that builds one strategy's learner and runs three steps."""
    cmd = [sys.executable, "-m", "study.benchmarks.balancers", "--peak-of", name, "--imgsz", str(imgsz),
           "--batch", str(batch), "--size", size, "--device", device, "--threads", str(torch.get_num_threads()),
           *(arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}"))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def _peak_of(name: str, imgsz: int, batch: int, size: str, device: str, overrides: dict[str, Any]) -> float:
    dev = torch.device(device)
    build_balancer(name, 2)  # a strategy's own imports (TorchJD, cvxpy) before the window: code is not a step's cost
    reset_peak_memory(dev)  # after the imports: torch's baseline + model + batch + the step's own peak
    arm = learner(name, imgsz, batch, size, dev, overrides)
    images, targets, views = make_batch(imgsz, batch, dev)
    for _ in range(3):  # past the one warm-up step: the strategy's full step
        arm.step(images, targets, views)
    return peak_memory_mb(dev)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as one Markdown table: a line per strategy (and variant), its step-time ratio to ``equal`` and its
    peak memory (MiB, where measured) at every image size side by side, in the rows' order."""
    sizes = list(dict.fromkeys(r["imgsz"] for r in rows))
    memory = any("peak_mem_mb" in r for r in rows)
    by_arm: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        label = r["name"] + (f" ({r['variant']})" if "variant" in r else "")
        by_arm.setdefault(label, {})[r["imgsz"]] = r
    columns = ["ratio", "peak MiB"] if memory else ["ratio"]
    head = ["balancer"] + [f"{px} px {what}" for px in sizes for what in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, at in by_arm.items():
        cells = [label]
        for px in sizes:
            r = at.get(px, {})
            cells.append(f"{r['ratio']:.2f}" if "ratio" in r else "")
            if memory:
                cells.append(f"{r['peak_mem_mb']:.0f}" if "peak_mem_mb" in r else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.bench balancers", description=__doc__.split("\n")[0])
    p.add_argument("--imgsz", type=int, nargs="+", default=[160, 320],
                   help="image sizes, each timed round-robin in turn (default: 160 and 320)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", default="n", choices=["n", "s"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-strategy peak-memory processes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config key for every strategy, e.g. --set model.shared_stages=2")
    p.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)
    p.add_argument("--only", nargs="+", default=None, choices=available(), metavar="NAME",
                   help="time only these strategies beside equal (default: every registered one)")
    p.add_argument("--markdown", action="store_true",
                   help="after the JSON lines, one Markdown table: ratio and peak memory per size, side by side")
    add_numerics_args(p)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    overrides = parse_set(args.set)
    if args.peak_of:
        print(round(_peak_of(args.peak_of, args.imgsz[0], args.batch, args.size, args.device, overrides), 1))
        return 0
    rows = run(args.imgsz, args.batch, args.size, args.steps, args.warmup, args.device, memory=not args.no_memory,
               overrides=overrides, variants=numerics_variants(args.precision, args.memory_format), only=args.only)
    emit(rows)
    if args.markdown:
        print(markdown(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
