"""static, uncertainty and DWA: their weights, computed by hand from the losses they saw."""

from __future__ import annotations

import pytest
import torch

from tests.balancing_toys import ToyModel, one_thread, toy_batch, train_step
from trainables.balancing.base import SharedGraph
from trainables.balancing.registry import build


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def steps(balancer, num_tasks: int, count: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    model = ToyModel(num_tasks)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    weights, losses = [], []
    for s in range(count):
        w, loss = train_step(model, balancer, optimizer, *toy_batch(num_tasks, s))
        weights.append(w)
        losses.append(loss)
    return weights, losses


def test_static_gives_w_det_to_detection_and_w_cls_to_the_rest():
    weights, _ = steps(build("static", 3, w_det=2.0, w_cls=0.25), 3, 2)
    assert all(torch.equal(w, torch.tensor([2.0, 0.25, 0.25])) for w in weights)


def test_static_rejects_negative_weights():
    with pytest.raises(ValueError, match=r"static balancer: balancer.w_det=-1.0 must be a finite number >= 0"):
        build("static", 2, w_det=-1.0)


def test_uncertainty_first_step_is_an_adam_sign_step_on_the_log_variances():
    """∂/∂s_i (exp(−s_i) L_i + s_i) at s = 0 is 1 − L_i; Adam's first step is −lr·sign(1 − L_i)."""
    lr = 0.1
    weights, losses = steps(build("uncertainty", 2, weight_lr=lr), 2, 2)
    assert torch.equal(weights[0], torch.ones(2))
    s1 = -lr * torch.sign(1 - losses[0])
    torch.testing.assert_close(weights[1], torch.exp(-s1), rtol=1e-5, atol=1e-7)


def test_uncertainty_weights_approach_inverse_losses():
    """At the optimum exp(s_i) = L_i: with the losses held fixed the weights go to 1/L_i."""
    balancer = build("uncertainty", 2, weight_lr=0.05)
    fixed = torch.tensor([4.0, 0.5], requires_grad=True)
    for _ in range(400):
        weights = balancer.backward(fixed, SharedGraph.split((), []))
        balancer.after_step(fixed.detach())
    torch.testing.assert_close(weights, 1 / fixed.detach(), rtol=0.05, atol=0)


def test_dwa_weights_follow_the_windowed_loss_ratios():
    window, temperature = 2, 2.0
    weights, losses = steps(build("dwa", 2, temperature=temperature, dwa_window=window), 2, 6)
    assert all(torch.equal(w, torch.ones(2)) for w in weights[: 2 * window])
    for t in range(2 * window, 6):
        before = torch.stack(losses[t - 2 * window : t - window]).mean(0)
        recent = torch.stack(losses[t - window : t]).mean(0)
        expected = 2 * torch.softmax(recent / before / temperature, dim=0)
        torch.testing.assert_close(weights[t], expected)
        assert torch.isclose(weights[t].sum(), torch.tensor(2.0))
