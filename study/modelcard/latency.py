"""Batch-1 latency of the exported ONNX file through ONNX Runtime on this machine's CPU, measured by the export.

One image (1, 3, S, S) per call, as a viewer scoring a frame at a time would send it; the session is
onnxruntime's default on the CPU (its own thread count), the first ``warmup`` calls are dropped (allocation,
graph optimisation, caches), then ``repeats`` calls are timed one by one. The card gives the median and the
spread (quartiles, min, max): one busy moment on the machine moves the mean and the max, not the median.
The figure is this machine's, at this load; the CPU and thread count are written beside it.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

WARMUP = 10
REPEATS = 50


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform says where that file is absent."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def onnx_latency(onnx_path: Path, image: np.ndarray, warmup: int = WARMUP, repeats: int = REPEATS) -> dict[str, Any]:
    """Time ``repeats`` batch-1 calls of the ONNX file on ``image`` (1, 3, S, S) float32 after ``warmup`` untimed
    ones; returns ``{median_ms, p25_ms, p75_ms, min_ms, max_ms, repeats, warmup, ...}`` in milliseconds."""
    import onnxruntime as ort

    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"onnx_latency: one image (1, 3, S, S), got {image.shape}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"onnx_latency: repeats {repeats} must be >= 1 and warmup {warmup} >= 0")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {"images": np.ascontiguousarray(image, dtype=np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    p25, _, p75 = statistics.quantiles(times, n=4, method="inclusive") if repeats > 1 else (times[0],) * 3
    threads = session.get_session_options().intra_op_num_threads  # 0: onnxruntime's default (the physical cores)
    return {"median_ms": statistics.median(times), "p25_ms": p25, "p75_ms": p75, "min_ms": min(times),
            "max_ms": max(times), "repeats": repeats, "warmup": warmup, "batch": 1,
            "imgsz": int(image.shape[-1]), "runtime": f"onnxruntime {ort.__version__}",
            "provider": "CPUExecutionProvider", "intra_op_threads": threads or "default",
            "cpu": cpu_name(), "logical_cpus": os.cpu_count()}
