"""Initialise a model from another model's weights, matching tensors by name and shape.

The source may be a checkpoint of this tool (its EMA weights when it has them), a plain
``state_dict`` (``{"name": tensor}``), or a torchvision weights file. Names are matched on whole
dotted components from the end, so the wrappers that distinguish the architectures do not get in
the way: a shared model's ``backbone.stem.conv.weight`` lands in the dual detector's
``detector.backbone.stem.conv.weight``, and torchvision's ``layer1.0.conv1.weight`` in the dual
classifier's ``classifier.features.layer1.0.conv1.weight``. A tensor whose shape differs (another
width, another class count) is skipped and listed, never reshaped.

Nothing is downloaded: the file must be on disk.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from trainables.checkpoint_format import unreadable_because


class WeightsError(ValueError):
    """The weights file cannot be read or holds no tensors; the message is one line for the user."""


@dataclass
class TransferReport:
    source: str
    matched: list[str] = field(default_factory=list)  # target names that were loaded
    skipped: list[str] = field(default_factory=list)  # "target: why" for every target left as it was
    unused: int = 0  # source tensors that went nowhere

    def summary(self) -> str:
        """One line: ``weights PATH: 312/350 tensors matched, 38 skipped (first: ...)``."""
        total = len(self.matched) + len(self.skipped)
        line = f"weights {self.source}: {len(self.matched)}/{total} tensors matched"
        if self.skipped:
            line += f", {len(self.skipped)} skipped (e.g. {'; '.join(self.skipped[:3])})"
        return line + (f"; {self.unused} source tensors unused" if self.unused else "")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file: this tool's checkpoint (EMA weights first), or a plain state_dict
    (also one nested under ``"model"`` or ``"state_dict"``). Loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model.weights {path}: no such file (give the path of a checkpoint or state_dict)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file, or one that needs pickle: refuse either way
        raise WeightsError(f"model.weights {path}: not a readable weights file: {unreadable_because(path, err)}; "
                           "give a checkpoint.pt of this tool or a state_dict saved with torch.save") from None
    if isinstance(state, dict) and isinstance(state.get("ema"), dict) and state["ema"].get("module"):
        state = state["ema"]["module"]
    elif isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise WeightsError(f"model.weights {path}: holds no named tensors (expected a checkpoint or a state_dict)")
    return tensors


def _suffix_match(target: str, source: str) -> int:
    """How many trailing dotted components two names share when one name ends with the whole other
    (0: no match). ``detector.backbone.stem.conv.weight`` vs ``backbone.stem.conv.weight`` -> 4."""
    t, s = target.split("."), source.split(".")
    n = min(len(t), len(s))
    return n if t[-n:] == s[-n:] else 0


def transfer_weights(model: nn.Module, source: dict[str, Tensor], name: str = "weights") -> TransferReport:
    """Copy every source tensor whose name (see module docstring) and shape fit one of ``model``'s.

    A target takes the candidate with the most shared name components; among equals, the first in
    the source's order. Each source tensor is used at most once per target name and may feed several
    targets (a shared trunk can initialise both dual networks when their widths match).
    """
    report = TransferReport(source=name)
    target_state = model.state_dict()
    used: set[str] = set()
    loaded: dict[str, Tensor] = {}
    for key, value in target_state.items():
        if key in source:
            candidates = [key]
        else:
            scored = [(_suffix_match(key, s), s) for s in source]
            best = max((score for score, _ in scored), default=0)
            candidates = [s for score, s in scored if score == best and score > 0]
        fitting = [s for s in candidates if source[s].shape == value.shape]
        if fitting:
            loaded[key] = source[fitting[0]].to(value.dtype)
            used.add(fitting[0])
            report.matched.append(key)
        elif candidates:
            report.skipped.append(f"{key}: shape {tuple(value.shape)} != {tuple(source[candidates[0]].shape)}")
        else:
            report.skipped.append(f"{key}: no tensor of that name")
    model.load_state_dict(loaded, strict=False)
    report.unused = len(set(source) - used)
    return report


def load_initial_weights(model: nn.Module, path: str | Path) -> TransferReport:
    """``transfer_weights`` from a file on disk; raises :class:`WeightsError` for an unusable file or one
    from which nothing matches (a silent from-scratch run would be a lie)."""
    report = transfer_weights(model, read_state_dict(path), name=str(path))
    if not report.matched:
        raise WeightsError(f"model.weights {path}: no tensor matches this model by name and shape "
                           f"({report.skipped[0] if report.skipped else 'empty model'})")
    return report
