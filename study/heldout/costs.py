"""Costs measured alone: each method's chosen configuration timed on an otherwise idle worker.

Trials of a study run side by side and share the cores, so the seconds they record
(``time.train_s``, ``eff.latency_ms_*`` in ``trials.parquet``) depend on what ran beside them; they
stay there as what they are. After the search, :func:`measure_isolated` times each method's chosen
configuration (study/store/selection.py: its best trial) as ONE Ray task at a time that asks for every CPU of
a node (and one GPU when trials had GPUs), so Ray schedules nothing beside it; the task runs in a
fresh worker process (``max_calls=1``), so its peak memory is its own, with torch's intra-op
threads set to the CPUs it holds.

What one measurement is (:func:`measure_config`, no Ray; shapes in the docstrings):

- ``cost.train_step_ms``: median wall milliseconds of 7 ``Learner.step`` calls (forward, balanced
  backward, clip, optimizer step(s)) on one real training batch of ``data.batch`` images, after
  warm-up steps; the batch is converted (and augmented when the config augments) once, outside the
  timing.
- ``cost.throughput_img_s``: ``data.batch`` / the median step seconds (training images per second).
- ``cost.latency_ms_b1`` / ``cost.latency_ms_b32``: eval-mode, no-grad forward milliseconds per image
  at batch 1 and 32 (trainables/metrics/efficiency.py; no NMS).
- ``cost.peak_mem_mb``: peak memory the measurement added, MiB: the peak during model building,
  the training steps and inference, minus the memory held before the model was built. CUDA: tensors
  allocated (``max_memory_allocated``); CPU: the process's peak resident set (VmHWM), so it includes
  allocator slack.
- ``cost.params`` and ``cost.gflops``: parameters and forward GFLOPs of one image (counted, not timed).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any

import pandas as pd

from study.store.trials import row_config
from trainables.wording import counted

COSTS = {  # column -> label; every one lower-is-better except throughput
    "cost.train_step_ms": "train step (ms)",
    "cost.throughput_img_s": "train throughput (img/s)",
    "cost.latency_ms_b1": "latency b1 (ms/img)",
    "cost.latency_ms_b32": "latency b32 (ms/img)",
    "cost.peak_mem_mb": "peak memory (MiB)",
    "cost.params": "parameters",
    "cost.gflops": "GFLOPs / image",
}
HIGHER_IS_BETTER = ("cost.throughput_img_s",)


def measure_config(flat: dict[str, Any], data: Any, threads: int, device: str = "cpu", warmup: int = 3,
                   repeats: int = 7) -> dict[str, Any]:
    """The ``cost.*`` figures of one flat TrialConfig on ``data`` (a DecodedData); no Ray.

    ``threads``: torch's intra-op threads (the CPUs this measurement holds).
    """
    import torch

    from trainables.config import TrialConfig
    from trainables.data.loader import iterate_batches
    from trainables.learner import Learner
    from trainables.metrics import efficiency

    torch.set_num_threads(max(1, int(threads)))
    cfg = TrialConfig.from_flat({**flat, "train.device": device})
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    images, targets, views, _ = next(iterate_batches(  # one real batch: images (B, 3, S, S), targets (K, 6)
        data, "train", cfg.data.batch, shuffle=True, generator=generator, device=dev,
        augment=cfg.data if cfg.data.augment else None))
    efficiency.reset_peak_memory(dev)
    start_mb = efficiency.current_memory_mb(dev)
    torch.manual_seed(cfg.train.seed)
    learner = Learner(cfg, data.num_classes, data.num_views, dev)
    learner.model.train()
    times = []
    for i in range(warmup + repeats):
        efficiency.sync(dev)
        t0 = time.perf_counter()
        learner.step(images, targets, views)
        efficiency.sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    model = learner.eval_model
    step_s = statistics.median(times)
    out = {
        "cost.train_step_ms": step_s * 1000,
        "cost.throughput_img_s": images.shape[0] / step_s if step_s > 0 else math.nan,
        # a fresh process pays first-call costs (kernel selection, allocator growth) per input shape: the
        # warm-up passes take them, the medians do not
        "cost.latency_ms_b1": efficiency.inference_latency_ms(model, cfg.data.imgsz, 1, dev, 5, 4 * repeats,
                                                              learner.numerics),
        "cost.latency_ms_b32": efficiency.inference_latency_ms(model, cfg.data.imgsz, 32, dev, 2, repeats,
                                                               learner.numerics),
    }
    out["cost.peak_mem_mb"] = max(0.0, efficiency.peak_memory_mb(dev) - start_mb)
    out["cost.params"] = float(efficiency.count_parameters(model))
    out["cost.gflops"] = efficiency.forward_gflops(model, cfg.data.imgsz, dev)
    out.update({"cost.batch": float(images.shape[0]), "cost.imgsz": float(cfg.data.imgsz),
                "cost.threads": float(torch.get_num_threads()), "cost.device": str(dev),
                "cost.precision": learner.numerics.precision, "cost.memory_format": learner.numerics.memory_format,
                "cost.host": os.uname().nodename})
    return out


def _largest_node(gpu: bool) -> tuple[int, int]:
    """(CPUs, GPUs) of the alive node with the most CPUs (among nodes with a GPU when ``gpu``)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    sizes = [(int(n["Resources"].get("CPU", 0)), int(n["Resources"].get("GPU", 0))) for n in nodes]
    if gpu:
        sizes = [s for s in sizes if s[1] > 0] or sizes
    return max(sizes, default=(1, 0))


def measure_isolated(chosen: pd.DataFrame, data: Any, gpu: bool = False) -> pd.DataFrame:
    """One row per method of ``chosen`` (``method``, ``trial_id`` and the flat config columns): its
    ``cost.*`` figures, each measured as the only task on a whole node, one method after another."""
    import ray

    cpus, gpus = _largest_node(gpu)
    use_gpu = gpu and gpus > 0
    task = ray.remote(num_cpus=max(cpus, 1), num_gpus=1 if use_gpu else 0, max_calls=1)(measure_config)
    data_ref = ray.put(data)  # passed as a top-level argument: the worker gets the object itself
    rows = []
    for _, row in chosen.iterrows():
        flat = row_config(row)
        t0 = time.perf_counter()
        costs = ray.get(task.remote(flat, data_ref, max(cpus, 1), "cuda" if use_gpu else "cpu"))
        threads = counted(int(costs["cost.threads"]), "thread")
        print(f"costs: {row['method']} (trial {row['trial_id']}) alone on {threads}, "
              f"{costs['cost.device']}: step {costs['cost.train_step_ms']:.1f} ms, "
              f"{costs['cost.throughput_img_s']:.1f} img/s, latency b1 {costs['cost.latency_ms_b1']:.2f} ms, "
              f"b32 {costs['cost.latency_ms_b32']:.2f} ms/img, peak +{costs['cost.peak_mem_mb']:.0f} MiB "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)
        rows.append({"method": row["method"], "cost.trial_id": str(row["trial_id"]), **costs})
    return pd.DataFrame(rows)
