"""The Ray Tune trainable: a flat config in, ``engine.fit`` with one ``tune.report`` per epoch.

Public ``ray.tune`` API only (report, get_checkpoint, Checkpoint, get_context). The decoded
dataset arrives through ``tune.with_parameters`` (the object store: every trial on a node reads the
same memory); this module never reads the dataset from disk.

Keys starting with ``meta.`` (the study's bookkeeping, e.g. ``meta.repeat_of``) are stripped before
the strict ``TrialConfig.from_flat``; every other key must be a config key.
"""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path
from typing import Any

import torch
from ray import tune

from trainables.config import TrialConfig
from trainables.data.types import DecodedData

CHECKPOINT_FILE = "checkpoint.pt"
META_PREFIX = "meta."


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
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))  # concurrent trials must not oversubscribe the cores

    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
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
        tune.report({**failure_metrics(epoch, 0, status, reason), "traceback": traceback.format_exc()[-4000:]})


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()
