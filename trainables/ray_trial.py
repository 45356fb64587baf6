"""The Ray Tune trainable: a flat config in, ``engine.fit`` with one ``tune.report`` per epoch.

Public ``ray.tune`` API only (report, get_checkpoint, Checkpoint, get_context). The decoded
dataset arrives through ``tune.with_parameters`` (the object store: every trial on a node reads the
same memory); this module never reads the dataset from disk.

Keys starting with ``meta.`` (the study's bookkeeping, e.g. ``meta.repeat_of``) are stripped before
the strict ``TrialConfig.from_flat``; every other key must be a config key.

Every report also carries ``placement.*`` keys: where the trial ran (Ray node id, node IP, host name)
and what it actually trained on (``cpu``, ``cuda:0``), so a cluster study records which node and
device produced each row. The device follows what Ray scheduled, not what the machine happens to
have: no GPU from Ray means the CPU, and a GPU from Ray that torch cannot see (a node that declares
``--num-gpus`` without a CUDA build or driver) means the CPU with one warning line, never silently.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables.checkpoint_format import CHECKPOINT_FILE
from trainables.config import TrialConfig
from trainables.data.types import DecodedData

META_PREFIX = "meta."
PLACEMENT_PREFIX = "placement."  # namespaced: Tune itself fills plain ``node_ip``/``hostname`` into results


def split_meta(flat: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config keys, meta keys) of a trial's flat dict."""
    config = {k: v for k, v in flat.items() if not k.startswith(META_PREFIX)}
    meta = {k: v for k, v in flat.items() if k.startswith(META_PREFIX)}
    return config, meta


def train_trial(config: dict[str, Any], data: DecodedData) -> None:
    """One trial. Deterministic failures (bad config, divergence, OOM, an exception in training)
    end the trial with ``status``/``reason`` in its last report instead of raising, so Tune does not
    retry them blindly; a dead worker process is the only failure Tune retries (FailureConfig)."""
    from trainables.engine import failure_metrics, fit  # heavy imports: only inside the worker

    flat, _ = split_meta(config)
    started_at = time.time()
    resources = tune.get_context().get_trial_resources().required_resources
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))  # concurrent trials must not oversubscribe the cores
    gpus = float(resources.get("GPU", 0))
    flat["train.device"], warning = choose_device(str(flat.get("train.device", "auto")), gpus,
                                                  torch.cuda.is_available())
    if warning:  # the worker's log; the driver prints it too (the recorder), as workers' output may not reach it
        print(f"warning: trial {tune.get_context().get_trial_id()}: {warning}", file=sys.stderr, flush=True)
    placement = {f"{PLACEMENT_PREFIX}{k}": v for k, v in
                 where_am_i(flat["train.device"], gpus, warning, started_at).items()}

    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        metrics = {**metrics, **placement, f"{PLACEMENT_PREFIX}reported_at": time.time()}
        if not state:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="mtl-ckpt-") as folder:
            torch.save(state, Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        cfg = TrialConfig.from_flat(flat)
        fit(cfg, data, report=report, resume=resume)
    except Exception as err:  # recorded, not retried: the same config would fail the same way
        status = "oom" if _is_oom(err) else "error"
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        epoch = int(resume["epoch"]) if resume else 0
        tune.report({**failure_metrics(epoch, 0, status, reason), **placement,
                     f"{PLACEMENT_PREFIX}reported_at": time.time(), "traceback": traceback.format_exc()[-4000:]})


def choose_device(requested: str, gpus: float, cuda_available: bool) -> tuple[str, str]:
    """(``train.device`` to train with, a warning or ""), given Ray's GPU share for this trial.

    ``auto`` follows Ray's scheduling: without a GPU share the trial stays on the CPU even if CUDA is
    visible (it would take a device Ray gave to another trial); with a share but no CUDA it falls back
    to the CPU and says so. An explicit ``cpu``/``cuda:N`` is kept as asked (the engine fails loudly on
    a CUDA device that is not there)."""
    if requested != "auto":
        return requested, ""
    if gpus <= 0:
        return "cpu", ""
    if cuda_available:
        return "cuda", ""
    cuda = torch.version.cuda
    why = "a CPU-only build" if cuda is None else f"built for CUDA {cuda}, no device visible"
    return "cpu", (f"Ray gave this trial {gpus:g} GPU but torch sees no CUDA device (torch {torch.__version__}: "
                   f"{why}); training on cpu")


def where_am_i(device: str, gpus: float, warning: str, started_at: float) -> dict[str, Any]:
    """The trial's node (Ray node id, IP, host name) and the device it trains on (``cpu``, ``cuda:0``)."""
    from trainables.engine import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())  # the index within the GPUs Ray made visible
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "node_host": socket.gethostname(),
        "device": str(resolved),
        "gpus": gpus,
        "device_warning": warning,
        "started_at": started_at,
    }


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()
