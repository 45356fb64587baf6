"""Balancers that fail on purpose, for the fault tests (not a test module).

A trial names one by its import path, ``balancer.name=tests.faults:RaiseOnSecondStep`` (the plugin
form of trainables/balancing/registry.py), so the product carries no fault switch: what a test sees
(status ``error``/``oom``/``diverged``, the reason) comes from the product's own handling of a real
exception or a real non-finite loss. Ray's trial workers import this module as ``tests.faults``, which
needs the repository root on their ``sys.path`` (tests/conftest.py sees to it).

Each is a GradNorm, so it takes GradNorm's hyperparameters and a space that searches them (the
gradnorm space) runs it unchanged; ``use_in_gradnorm_space`` makes that space train it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from trainables.balancing.base import SharedGraph, weighted_backward
from trainables.balancing.gradnorm import GradNorm

if TYPE_CHECKING:  # pytest is not imported where the trial runs
    import pytest


class _FailOnSecondStep(GradNorm):
    """A GradNorm whose second ``backward`` of a run (the first of a resumed run counts as one) fails."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        self.calls += 1
        if self.calls == 2:
            self.fail()
        return super().backward(losses, shared)

    def fail(self) -> None:
        raise NotImplementedError


class RaiseOnSecondStep(_FailOnSecondStep):
    """A bug in a strategy: an ordinary exception in the middle of training."""

    def fail(self) -> None:
        raise RuntimeError("injected failure (tests.faults:RaiseOnSecondStep)")


class OutOfMemoryOnSecondStep(_FailOnSecondStep):
    """What a too-large configuration meets on a GPU: the allocator's ``torch.OutOfMemoryError``."""

    def fail(self) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (tests.faults)")


class NaNWeights(GradNorm):
    """A strategy that diverges: NaN task weights from the first step, so the optimizer step writes NaN
    into the network and the next step's losses are NaN (what the learner's finite check catches)."""

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        weights = torch.full((self.num_tasks,), math.nan, device=losses.device)
        weighted_backward(losses, weights, shared)
        return weights


def path_of(cls: type) -> str:
    """The ``balancer.name`` of a fault balancer: ``tests.faults:ClassName``."""
    return f"{__name__}:{cls.__name__}"


def use_in_gradnorm_space(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    """Make ``--space gradnorm`` train ``cls`` instead of GradNorm. The space is read by the study's
    searcher, which runs in this (the driver's) process, so every trial's config names ``cls``."""
    from search_spaces import gradnorm

    monkeypatch.setitem(gradnorm.FIXED, "balancer.name", path_of(cls))
