"""Keeping a strategy's learnable weights and their optimizer on the device of the losses."""

from __future__ import annotations

import torch
from torch import Tensor


def place(param: Tensor, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move ``param`` (a leaf the optimizer steps) and the optimizer's state for it to ``device``.

    The weights are a handful of numbers; keeping them where the losses are means a training step
    never waits on a host sync. Adam's ``step`` counter stays on the CPU, where Adam expects it.
    """
    if param.device == device:
        return
    param.data = param.data.to(device)
    for state in optimizer.state.values():
        for key, value in state.items():
            if key != "step" and isinstance(value, Tensor):
                state[key] = value.to(device)
