"""How a run computes: bf16 autocast or fp32, channels-last or contiguous memory (``train.precision``,
``train.memory_format``). One resolved ``Numerics`` serves training, validation, BatchNorm recalibration,
the interference measurement, predict and the isolated cost measurement, so they all run the network as
training did.

What stays fp32 under bf16 autocast: the parameters (autocast casts a copy per op; the optimizer, EMA and
checkpoints see fp32), BatchNorm's running statistics (buffers), the losses (``losses.py`` casts the heads'
outputs), the balancers' feature gradients, norms and dot products (``balancing/grads.py``), and every
metric (computed on ``.float()`` outputs).

``auto`` precision is bf16 on CUDA and on CPUs with bf16 matrix instructions (AMX-BF16 or AVX512-BF16, as
``torch.cpu`` reports them: oneDNN's bf16 kernels run natively there); fp32 elsewhere, where oneDNN would
emulate bf16 and a laptop with AVX2 only would get slower. ``auto`` memory format is channels-last on both
(docs/benchmarks.md#bf16-and-channels-last: faster on this CPU in fp32 and bf16 alike).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from trainables.config import TrainConfig


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX tiles or AVX512-BF16), as PyTorch detects them."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_precision(name: str, device: torch.device, cpu_bf16: bool | None = None) -> str:
    """``fp32`` or ``bf16`` for ``name`` on ``device``; ``cpu_bf16`` overrides the CPU check (tests)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16"
    if device.type == "cpu":
        return "bf16" if (cpu_has_bf16_matmul() if cpu_bf16 is None else cpu_bf16) else "fp32"
    return "fp32"  # mps and others: autocast coverage varies, fp32 is the safe default


def resolve_memory_format(name: str, device: torch.device) -> str:
    """``channels_last`` or ``contiguous`` for ``name`` on ``device``."""
    if name != "auto":
        return name
    return "channels_last" if device.type in ("cpu", "cuda") else "contiguous"


@dataclass(frozen=True)
class Numerics:
    """A resolved precision and memory format on one device."""

    device: torch.device
    precision: str  # "fp32" | "bf16"
    memory_format: str  # "channels_last" | "contiguous"

    @classmethod
    def resolve(cls, precision: str, memory_format: str, device: torch.device,
                cpu_bf16: bool | None = None) -> Numerics:
        return cls(device, resolve_precision(precision, device, cpu_bf16), resolve_memory_format(memory_format, device))

    @classmethod
    def fp32(cls, device: torch.device | str) -> Numerics:
        """fp32 in PyTorch's default layout: how a model runs when nothing says otherwise."""
        return cls(torch.device(device), "fp32", "contiguous")

    @property
    def torch_format(self) -> torch.memory_format:
        return torch.channels_last if self.memory_format == "channels_last" else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the device, or nothing."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def images(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in the run's memory format (a no-op when it already is)."""
        return images.contiguous(memory_format=self.torch_format)

    def module(self, model: nn.Module) -> nn.Module:
        """``model`` with its 4-D weights in the run's memory format (in place, returned for chaining)."""
        return model.to(memory_format=self.torch_format)

    def describe(self) -> str:
        """One line for the console: ``bf16 autocast, channels_last``."""
        return f"{'bf16 autocast' if self.precision == 'bf16' else 'fp32'}, {self.memory_format}"

    def explain(self, requested: str) -> str:
        """The line a command prints once: ``compute: bf16 autocast, channels_last (train.precision=auto: ...)``."""
        why = ""
        if requested == "auto" and self.device.type == "cpu":
            why = (" (train.precision=auto: this CPU has bf16 matrix instructions)" if self.precision == "bf16"
                   else " (train.precision=auto: this CPU has no bf16 matrix instructions)")
        elif requested == "auto":
            why = f" (train.precision=auto on {self.device.type})"
        return f"compute: {self.describe()}{why}"

    def as_row(self) -> dict[str, str]:
        """What a trial records (epochs.parquet, trials.parquet): ``eff.precision``, ``eff.memory_format``."""
        return {"eff.precision": self.precision, "eff.memory_format": self.memory_format}

    def as_state(self) -> dict[str, str]:
        """What a checkpoint records (``state["numerics"]``): read back by ``checkpoint_numerics``."""
        return {"precision": self.precision, "memory_format": self.memory_format}


def checkpoint_numerics(state: dict, train: TrainConfig, device: torch.device,
                        precision: str | None = None) -> Numerics:
    """How to run a stored model on ``device``: at ``precision`` when given, else at the precision it trained at.

    ``state["numerics"]`` records it; a checkpoint without the record predates CPU bf16: it trained in fp32
    unless it trained on CUDA (``auto``), so on a CPU it is run in fp32. ``train``: the checkpoint's config.
    """
    stored = state.get("numerics") or {}
    if precision is None:
        precision = stored.get("precision")
    if precision is None:
        precision = "bf16" if (train.precision != "fp32" and device.type == "cuda") else "fp32"
    return Numerics.resolve(precision, stored.get("memory_format", train.memory_format), device)
