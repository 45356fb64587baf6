"""The balancer contract, checked for every registered strategy with 2 and 3 tasks on a toy model."""

from __future__ import annotations

import io

import pytest
import torch

from tests.balancing_toys import ToyModel, mse_losses, one_thread, toy_batch, train_step
from trainables.balancing.base import SharedGraph
from trainables.balancing.registry import available, build, hparams_of

# Small windows so every strategy is past its warm-up within the few steps a test runs; each strategy
# takes those of these it declares, the rest of its hyperparameters at their defaults.
HPARAMS = dict(
    alpha=1.5, weight_lr=0.05, warmup_steps=2, w_det=1.0, w_cls=0.5, temperature=2.0, cagrad_c=0.4, dwa_window=2
)


def hparams(name: str) -> dict:
    return {h.name: HPARAMS[h.name] for h in hparams_of(name) if h.name in HPARAMS}


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield
STEPS = 6
CASES = [(name, t) for name in available() for t in (2, 3)]


def make(name: str, num_tasks: int, seed: int = 0):
    torch.manual_seed(seed)
    model = ToyModel(num_tasks).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, optimizer, build(name, num_tasks, **hparams(name))


def batch(num_tasks: int, step: int):
    x, targets = toy_batch(num_tasks, step)
    return x.double(), [t.double() for t in targets]


def grads_of(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def run(name: str, num_tasks: int, steps: int = STEPS, seed: int = 0):
    model, optimizer, balancer = make(name, num_tasks, seed)
    weights = [train_step(model, balancer, optimizer, *batch(num_tasks, s))[0] for s in range(steps)]
    return weights, grads_of(model), model


def test_every_strategy_is_registered():
    assert {"equal", "static", "gradnorm", "uncertainty", "dwa", "pcgrad", "cagrad"} <= set(available())
    # issue 39: the TorchJD-era methods (trainables/balancing/gramian.py: gradient side; famo, rlw: loss side)
    assert {"upgrad", "upgrad_params", "dualproj", "mgda", "imtl_g", "aligned_mtl", "nash_mtl", "famo",
            "rlw"} <= set(available())


@pytest.mark.parametrize(("name", "num_tasks"), CASES)
def test_weights_finite_and_grads_on_every_parameter(name, num_tasks):
    weights, grads, _ = run(name, num_tasks)
    for w in weights:
        assert w.shape == (num_tasks,)
        assert torch.isfinite(w).all()
    for param_name, g in grads.items():
        assert g is not None, f"{name}: no grad on {param_name}"
        assert torch.isfinite(g).all()
    # The trunk (shared) and every head (task-specific) actually received a gradient.
    for param_name in ["l1.weight", "l2.weight", "skip.weight"] + [f"task_heads.{i}.weight" for i in range(num_tasks)]:
        assert grads[param_name].abs().sum() > 0, f"{name}: zero grad on {param_name}"


@pytest.mark.parametrize(("name", "num_tasks"), CASES)
def test_trunk_gets_the_gradient_of_the_weighted_sum(name, num_tasks):
    """Whatever a strategy does, the trunk's gradient is Σ_i w_i ∇L_i for the weights it returns."""
    model, optimizer, balancer = make(name, num_tasks)
    for s in range(STEPS - 1):
        train_step(model, balancer, optimizer, *batch(num_tasks, s))
    x, targets = batch(num_tasks, STEPS)
    optimizer.zero_grad(set_to_none=True)
    shared = SharedGraph.split(model.trunk(x), model.shared_parameters())
    weights = balancer.backward(mse_losses(model.heads(shared.detached), targets), shared)
    losses = mse_losses(model.heads(model.trunk(x)), targets)  # the same forward, unsplit
    trunk = model.trunk_parameters()
    expected = torch.autograd.grad((weights.double() * losses).sum(), trunk)
    for p, e in zip(trunk, expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("name", "num_tasks"), CASES)
def test_same_seed_same_result(name, num_tasks):
    w1, g1, m1 = run(name, num_tasks)
    w2, g2, m2 = run(name, num_tasks)
    assert all(torch.equal(a, b) for a, b in zip(w1, w2, strict=True))
    assert all(torch.equal(g1[k], g2[k]) for k in g1)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters(), strict=True))


@pytest.mark.parametrize(("name", "num_tasks"), CASES)
def test_state_dict_round_trip_gives_the_same_next_step(name, num_tasks):
    model, optimizer, balancer = make(name, num_tasks)
    for s in range(STEPS):
        train_step(model, balancer, optimizer, *batch(num_tasks, s))
    buffer = io.BytesIO()  # through a real checkpoint: tensors and plain values only
    torch.save({"model": model.state_dict(), "opt": optimizer.state_dict(), "bal": balancer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    model2, optimizer2, balancer2 = make(name, num_tasks, seed=123)  # different init, then restored
    model2.load_state_dict(saved["model"])
    optimizer2.load_state_dict(saved["opt"])
    balancer2.load_state_dict(saved["bal"])

    for s in range(STEPS, STEPS + 2):  # two steps: the second uses what after_step changed
        w1, _ = train_step(model, balancer, optimizer, *batch(num_tasks, s))
        w2, _ = train_step(model2, balancer2, optimizer2, *batch(num_tasks, s))
        assert torch.equal(w1, w2)
        g1, g2 = grads_of(model), grads_of(model2)
        assert all(torch.equal(g1[k], g2[k]) for k in g1)


@pytest.mark.parametrize(("name", "num_tasks"), CASES)
def test_nothing_shared_falls_back_to_the_weighted_sum(name, num_tasks):
    """A frozen trunk (no gradient flows back): heads still get Σ w_i ∇L_i, nothing breaks."""
    model, optimizer, balancer = make(name, num_tasks)
    for s in range(STEPS):
        x, targets = batch(num_tasks, s)
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            features = model.trunk(x)
        shared = SharedGraph.split(features, model.shared_parameters())
        assert not shared.active
        losses = mse_losses(model.heads(shared.detached), targets)
        weights = balancer.backward(losses, shared)
        assert weights.shape == (num_tasks,) and torch.isfinite(weights).all()
        assert model.l1.weight.grad is None
        head = model.task_heads[0].weight
        expected = torch.autograd.grad(
            (weights.double() * mse_losses(model.heads(features), targets)).sum(), head
        )[0]
        torch.testing.assert_close(head.grad, expected)
        optimizer.step()
        balancer.after_step(losses.detach())
