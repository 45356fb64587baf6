"""Checkpoints on disk: written atomically, read with ``weights_only=True`` (no pickle from disk)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from study.atomic import atomic_path
from study.cli import UsageError
from trainables.config import ConfigError, TrialConfig


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state dict of a checkpoint written by the engine; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns before failing on a file it cannot read: one line only
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file, or one that needs pickle: refuse either way
        raise UsageError(f"{path}: not a readable checkpoint ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:160]})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UsageError(f"{path}: not a checkpoint written by this tool (no model/config inside)")
    return state


def restore_model(state: dict[str, Any], path: Path | str = "checkpoint") -> tuple[Any, TrialConfig]:
    """The checkpoint's model (EMA weights when it has them), in eval mode on the CPU, and its config.

    Raises UsageError when the checkpoint's config, format or weights do not fit this tool's models.
    """
    from trainables.engine import CHECKPOINT_FORMAT
    from trainables.models.build import build_model

    if state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path}: checkpoint format {state.get('format')!r}, this tool reads format "
                         f"{CHECKPOINT_FORMAT}; retrain with this version")
    try:
        cfg = TrialConfig.from_flat(dict(state["config"]))
        model = build_model(cfg, int(state["num_classes"]), int(state["num_views"]))
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise UsageError(f"{path}: the checkpoint's config does not build a model here ({err})") from None
    ema = state.get("ema") or {}
    weights = ema.get("module") if ema else state["model"]
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as err:
        first = str(err).splitlines()[0][:200]
        raise UsageError(f"{path}: its weights do not fit a {cfg.arch} model of this config "
                         f"(another architecture or version?): {first}") from None
    return model.eval(), cfg
