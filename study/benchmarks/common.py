"""What the benchmarks share: a synthetic batch, round-robin timing, medians, JSON lines.

(study/analysis/common.py, the same name, is what the report's modules share: each package's ``common``.)
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

NUM_CLASSES, NUM_VIEWS, BOXES_PER_IMAGE = 4, 4, 2


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


def shortest_warmups(balancer: str) -> dict[str, Any]:
    """``{"balancer.<key>": low}`` for each warm-up hyperparameter balancer ``balancer`` declares
    (``Hparam.warmup``: GradNorm's L(0) steps, DWA's window), so every timed step does its full work."""
    from trainables.balancing.registry import hparams_of

    return {h.key: h.type(h.low) for h in hparams_of(balancer) if h.warmup}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin(steps: dict[str, Callable[[], Any]], repeats: int, warmup: int,
                device: torch.device) -> dict[str, list[float]]:
    """Seconds of each named step, run in turn (one of each per round) so load drift hits all alike."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def numerics_variants(precisions: list[str], memory_formats: list[str]) -> list[dict[str, str]]:
    """Every (precision, memory format) pair asked for, as config overrides, in the order given: the first
    is the baseline the others' ratios are taken to (``--precision fp32 bf16 --memory-format contiguous
    channels_last``: fp32 contiguous first)."""
    return [{"train.precision": p, "train.memory_format": m} for p in precisions for m in memory_formats]


def variant_label(numerics: Any) -> str:
    """``bf16+channels_last``: a resolved ``trainables.precision.Numerics`` in a row or a ratio's name."""
    return f"{numerics.precision}+{numerics.memory_format}"


def add_numerics_args(p: Any) -> None:
    """The benchmarks' ``--precision`` and ``--memory-format`` (several values: one arm each, side by side)."""
    p.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"],
                   help="train.precision of the arms, several to compare side by side (the first is the baseline)")
    p.add_argument("--memory-format", nargs="+", default=["auto"], choices=["auto", "channels_last", "contiguous"],
                   help="train.memory_format of the arms, several to compare side by side")


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(json.dumps(row), flush=True)
