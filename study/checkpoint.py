"""Checkpoints on disk: written atomically, read with ``weights_only=True`` (no pickle from disk)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from study.atomic import atomic_path
from study.cli import UsageError


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
