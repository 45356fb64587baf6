"""What a model costs: parameters, GFLOPs of one forward pass, peak memory, inference latency."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainables.precision import Numerics


def count_parameters(params: nn.Module | Iterable[nn.Parameter]) -> int:
    """Number of scalar parameters (trainable or not), each shared tensor counted once."""
    items = params.parameters() if isinstance(params, nn.Module) else params
    return sum(p.numel() for p in {id(p): p for p in items}.values())


def parameter_counts(groups: nn.Module | Mapping[str, Iterable[nn.Parameter]]) -> dict[str, int]:
    """``{"total": n, <group>: n, ...}``.

    ``groups``: a mapping of group name -> parameters (what the models' ``task_parameters()``
    returns: "shared", "det", "cls"), or a module -- its ``task_parameters()`` when it has one,
    else just the total. With a mapping, ``total`` counts the union of the groups once each.
    """
    if isinstance(groups, nn.Module):
        if not hasattr(groups, "task_parameters"):
            return {"total": count_parameters(groups)}
        groups = groups.task_parameters()
    lists = {name: list(params) for name, params in groups.items()}
    out = {"total": count_parameters(p for params in lists.values() for p in params)}
    out.update({name: count_parameters(params) for name, params in lists.items()})
    return out


def _image_batch(imgsz: int | tuple[int, int], batch: int, device: torch.device | str) -> torch.Tensor:
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, h, w, generator=gen).to(device)  # (B, 3, H, W) in [0, 1]


def forward_gflops(model: nn.Module, imgsz: int | tuple[int, int], device: torch.device | str) -> float:
    """GFLOPs (1e9 FLOPs) of one eval-mode forward pass on one (1, 3, H, W) image.

    Counted by ``torch.utils.flop_counter.FlopCounterMode``: a multiply-add is 2 FLOPs (the same
    convention as the "GFLOPs" YOLOv5 prints, which doubles thop's MACs). Only matrix products and
    convolutions count; biases, normalisation, activations and pooling are not counted.
    """
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(_image_batch(imgsz, 1, device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def reset_peak_memory(device: torch.device | str) -> bool:
    """Start a new peak-memory window; False where the platform cannot (the peak then counts from
    process start). CUDA: the caching allocator's peak; CPU (Linux): the process's peak RSS.

    On the CPU the window starts from a trimmed heap: a study reuses a trial's worker process for the
    next trial, and memory the last trial freed but the C allocator kept would otherwise count
    against the next one (measured: docs/benchmarks.md#heap-trim)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    gc.collect()
    _release_freed_heap()
    try:  # Linux >= 4.0: "5" resets the peak RSS that getrusage reports
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_freed_heap() -> None:
    """Hand freed C-heap pages back to the OS (glibc ``malloc_trim``); nothing elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs ``ldconfig``); None off glibc."""
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak memory in MiB (2**20 bytes) since the last ``reset_peak_memory``.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the allocator's cache or the CUDA
    context). CPU: the process's peak resident set size (Linux: ``VmHWM``; elsewhere ``getrusage``
    ``ru_maxrss``, bytes on macOS) -- everything the process holds, including the dataset and Python itself.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _proc_status_mb("VmHWM")  # exactly what clear_refs resets; ru_maxrss may keep a peak from exited threads
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def current_memory_mb(device: torch.device | str) -> float:
    """Memory held now, in the units of :func:`peak_memory_mb`: CUDA allocated tensors, or the process's
    resident set (Linux ``VmRSS``; 0 where /proc is absent)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    now = _proc_status_mb("VmRSS")
    return now if now is not None else 0.0


def _proc_status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (kB there) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_latency_ms(
    model: nn.Module,
    imgsz: int | tuple[int, int],
    batch: int,
    device: torch.device | str,
    warmup: int = 2,
    repeats: int = 5,
    numerics: Numerics | None = None,
) -> float:
    """Milliseconds per image of an eval-mode, no-grad forward pass at batch size ``batch``.

    ``numerics``: the precision and memory format to run at (the trial's); None: fp32, as the input comes.

    ``warmup`` untimed passes (allocator, cuDNN autotuning), then the median of ``repeats`` timed
    passes, divided by ``batch``. CUDA is synchronised around each pass, so the time is the
    kernels' and not just the launches'. Forward only: no NMS or other post-processing.
    """
    device = torch.device(device)
    x = _image_batch(imgsz, batch, device)  # (B, 3, H, W)
    numerics = numerics or Numerics.fp32(device)
    x = numerics.images(x)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad(), numerics.autocast():
            for i in range(warmup + repeats):
                sync(device)
                t0 = time.perf_counter()
                model(x)
                sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times) * 1000 / batch
