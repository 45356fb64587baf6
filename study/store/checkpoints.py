"""Checkpoints on disk: written atomically, read with ``weights_only=True`` (no pickle from disk), and
found in a study's trial folders (``STUDY/trial_<id>/checkpoint_<6-digit index>/checkpoint.pt``)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from study.errors import UsageError
from study.store.atomic import atomic_path
from study.store.folder import repeats_dir, search_dir_of
from trainables.checkpoint_format import CHECKPOINT_FILE, CHECKPOINT_FORMAT, unreadable_because
from trainables.config import ConfigError, TrialConfig


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state dict of a checkpoint written by the engine; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns before failing on a file it cannot read: one line only
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file, or one that needs pickle: refuse either way
        raise UsageError(f"{path}: not a readable checkpoint: {unreadable_because(path, err)}; give a "
                         f"{CHECKPOINT_FILE} that study.run or study.train wrote") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UsageError(f"{path}: not a checkpoint written by this tool (no model/config inside)")
    return state



def restore_model(state: dict[str, Any], path: Path | str = "checkpoint") -> tuple[Any, TrialConfig]:
    """The checkpoint's model (EMA weights when it has them), in eval mode on the CPU, and its config.

    Raises UsageError when the checkpoint's config, format or weights do not fit this tool's models.
    """
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


# -- finding a trial's checkpoints -----------------------------------------------------------------
def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's state, memory-mapped: reading ``epoch`` or ``history`` touches no weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def trial_checkpoints(trial_dir: Path) -> list[Path]:
    """A trial folder's ``checkpoint_<6-digit index>/checkpoint.pt`` files, oldest first."""
    return sorted(Path(trial_dir).glob(f"checkpoint_*/{CHECKPOINT_FILE}"), key=lambda p: p.parent.name)


def checkpoint_of_epoch(found: list[Path], epoch: int) -> Path | None:
    """The newest of ``found`` that holds ``epoch`` (a resumed trial may have saved an epoch twice)."""
    for path in reversed(found):
        try:
            if int(read_state(path).get("epoch", -1)) == epoch:
                return path
        except Exception:  # an unreadable file is not the one we want
            continue
    return None


def trial_checkpoint(study_dir: Path, trial_id: str, epoch: int | None = None, strict: bool = False) -> Path | None:
    """A checkpoint of ``trial_id``: the one holding ``epoch`` when given (when that one is gone: None with
    ``strict``, else a warning and the newest), else the newest. A trial's folder is ``trial_<trial_id>``
    (studies from before: Tune's ``<trainable>_<trial_id>_...``) under the study folder (or under ``NAME-repeats``
    for --repeat-best seeds)."""
    roots = [study_dir, repeats_dir(study_dir)]
    folders = [d for root in roots if root.is_dir() for d in root.iterdir()
               if d.is_dir() and f"_{trial_id}_" in f"{d.name}_"]
    found = sorted((c for d in folders for c in trial_checkpoints(d)), key=lambda c: c.parent.name)
    if not found and strict:
        return None
    if not found:
        raise UsageError(f"--best {study_dir}: trial {trial_id} has no {CHECKPOINT_FILE} under its Tune folder "
                         "(the checkpoint may have been deleted); pass a CHECKPOINT explicitly")
    if epoch is None:
        return found[-1]
    at_epoch = checkpoint_of_epoch(found, epoch)
    if at_epoch is None and strict:
        return None
    if at_epoch is None:
        print(f"warning: trial {trial_id}'s epoch-{epoch} checkpoint is gone (a study from before best-epoch "
              f"checkpoints?); scoring its newest ({found[-1].parent.name})", file=sys.stderr)
        return found[-1]
    return at_epoch


def study_of(checkpoint: Path) -> Path | None:
    """The study folder holding a checkpoint file or its Tune folder (``STUDY/<trial>/checkpoint_X/``), if any."""
    checkpoint = checkpoint / CHECKPOINT_FILE if checkpoint.is_dir() else checkpoint
    for parent in checkpoint.resolve().parents[:4]:
        for candidate in (parent, search_dir_of(parent)):
            if (candidate / "manifest.json").is_file():
                return candidate
    return None
