"""Every registered balancer on the default model, through the engine's own ``Learner.step``, under bf16 autocast:
finite steps with float32 state, an exact resume from a checkpoint, and a non-finite loss that changes nothing.

(tests/test_balancing.py holds the same contract on a toy model in float64; this is the real network at 64 px.)
"""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch

from study.benchmarks.common import NUM_CLASSES, NUM_VIEWS, make_batch, shortest_warmups
from trainables.balancing.registry import available
from trainables.config import TrialConfig, fit_balancer
from trainables.learner import Learner

CPU = torch.device("cpu")
IMGSZ, BATCH = 64, 2


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def learner(name: str, seed: int = 0) -> Learner:
    """The default model and config with balancer ``name``, its warm-ups at their shortest (GradNorm's L(0), DWA's
    window: every step after the first does the strategy's full work), bf16 autocast whatever this CPU has."""
    torch.manual_seed(seed)
    cfg = TrialConfig.from_partial(fit_balancer({"data.imgsz": IMGSZ, "data.batch": BATCH, "train.precision": "bf16",
                                                 "balancer.name": name, **shortest_warmups(name)}))
    return Learner(cfg, NUM_CLASSES, NUM_VIEWS, CPU)


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return make_batch(IMGSZ, BATCH, CPU, seed=step)


def leaves(state: Any, path: str = "") -> list[tuple[str, Any]]:
    """A nested state (dicts, lists, tensors, numbers) as (path, value) pairs, in a fixed order."""
    if isinstance(state, dict):
        return [pair for key in sorted(state, key=str) for pair in leaves(state[key], f"{path}/{key}")]
    if isinstance(state, (list, tuple)):
        return [pair for i, value in enumerate(state) for pair in leaves(value, f"{path}/{i}")]
    return [(path, state)]


def assert_same(a: Any, b: Any) -> None:
    pairs_a, pairs_b = leaves(a), leaves(b)
    assert [p for p, _ in pairs_a] == [p for p, _ in pairs_b]
    for (path, x), (_, y) in zip(pairs_a, pairs_b, strict=True):
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, path


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", available())
def test_finite_steps_on_the_default_model_with_float32_state(name):
    arm = learner(name)
    assert arm.numerics.precision == "bf16" and arm.balanced
    before = parameters(arm.model)
    for step in range(3):
        out = arm.step(*batch(step))
        assert out.finite and torch.isfinite(out.losses).all()
        assert out.weights.shape == (2,) and torch.isfinite(out.weights).all()
    after = parameters(arm.model)
    assert all(torch.isfinite(p).all() for p in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    floats = [(path, v) for path, v in leaves(arm.balancer.state_dict())
              if isinstance(v, torch.Tensor) and v.is_floating_point()]
    # the state a balancer keeps (weights, logits, moments, losses seen) is never bf16, whatever the autocast
    assert all(v.dtype in (torch.float32, torch.float64) for _, v in floats), floats


@pytest.mark.parametrize("name", available())
def test_a_resumed_learner_takes_the_same_steps(name):
    """Two steps, a checkpoint through torch.save, a fresh learner (another seed) loads it: its next two steps
    give the same weights and parameters as the uninterrupted learner's."""
    straight = learner(name)
    for step in range(2):
        straight.step(*batch(step))
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)
    buffer.seek(0)
    resumed = learner(name, seed=1)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for step in range(2, 4):
        a, b = straight.step(*batch(step)), resumed.step(*batch(step))
        assert torch.equal(a.weights, b.weights) and torch.equal(a.losses, b.losses)
    assert_same(parameters(straight.model), parameters(resumed.model))
    assert_same(straight.balancer.state_dict(), resumed.balancer.state_dict())


@pytest.mark.parametrize("name", available())
def test_a_non_finite_loss_changes_no_parameter_and_no_balancer_state(name):
    """A batch with NaN pixels: the step reports it (NaN weights, ``finite`` False) and neither the optimizer
    nor the balancer acts; the next step is the one a twin that never saw that batch takes. (The engine then ends
    the run as diverged: tests/test_engine.py.)"""
    seen, twin = learner(name), learner(name)
    seen.step(*batch(0))
    twin.step(*batch(0))
    images, targets, views = batch(1)
    images[0, :, :4, :4] = math.nan  # the losses go NaN (and so do BatchNorm's running statistics: buffers, which
    out = seen.step(images, targets, views)  # training-mode steps do not read, and are not compared below)
    assert not out.finite and torch.isnan(out.weights).all()
    a, b = seen.step(*batch(2)), twin.step(*batch(2))
    assert torch.equal(a.weights, b.weights)
    assert_same(parameters(seen.model), parameters(twin.model))
    assert_same(seen.balancer.state_dict(), twin.balancer.state_dict())
