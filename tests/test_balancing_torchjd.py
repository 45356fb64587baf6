"""The balancers built on TorchJD, and ours beside TorchJD's: hand-computed weights and parity tests.

Gradient side: every weighting on hand-made Gramians (two tasks, g1 = (1, 0) and a conflicting g2),
the T-scaling that makes "no conflict" mean ``equal``, and ``upgrad_params`` against TorchJD's own
``mtl_backward`` + ``jac_to_grad``. PCGrad (now TorchJD's) and CAGrad (kept: see its docstring) against
TorchJD's aggregators. Loss side: FAMO and RLW by hand and against TorchJD's scalarisers; uncertainty
weighting and DWA against TorchJD's UW and DWA, which differ from ours by a stated factor and schedule.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.balancing_toys import SyntheticTrunk, one_thread, toy_batch
from trainables.balancing.base import SharedGraph
from trainables.balancing.cagrad import cagrad_weights
from trainables.balancing.pcgrad import pcgrad
from trainables.balancing.registry import build
from trainables.balancing.rlw import RLW

# g1 = (1, 0), g2 = (−1, 1): g1·g2 = −1, a conflict; the Gramian of these two rows
J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
G = J @ J.T
NO_LOSSES = SharedGraph.split((), [])  # nothing shared: a balancer's backward is the weighted sum of the losses


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


# -- gradient side: the weightings --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["upgrad", "dualproj", "mgda", "imtl_g", "aligned_mtl", "nash_mtl"])
@pytest.mark.parametrize("num_tasks", [2, 3])
def test_without_conflict_every_weighting_is_the_plain_sum(name, num_tasks):
    """Orthogonal task gradients of equal norm: each method's weights, times T, are ``equal``'s ones."""
    gram = 4.0 * torch.eye(num_tasks, dtype=torch.float64)
    torch.testing.assert_close(build(name, num_tasks).weights_of(gram), torch.ones(num_tasks, dtype=torch.float64),
                               rtol=1e-6, atol=1e-6)


def test_upgrad_by_hand():
    """π(g1) onto {x·g2 >= 0} = (1/2, 1/2), π(g2) onto {x·g1 >= 0} = (0, 1); their mean, times 2, is
    (1/2, 3/2) = 2·g1 + 3/2·g2. quadprog solves on the trace-normalised Gramian with 1e-4 on its diagonal:
    within 1e-3."""
    weights = build("upgrad", 2).weights_of(G)
    torch.testing.assert_close(weights, torch.tensor([2.0, 1.5], dtype=torch.float64), rtol=1e-3, atol=0)
    torch.testing.assert_close(weights @ J, torch.tensor([0.5, 1.5], dtype=torch.float64), rtol=1e-3, atol=1e-3)


def test_dualproj_by_hand():
    """g2 = (−2, 1/2): the mean (−1/2, 1/4) conflicts with g1; its projection onto {x·g1 >= 0}, (0, 1/4),
    also has x·g2 >= 0, so it is the projection onto the cone: 1·g1 + 1/2·g2, times 2. Within 1e-3 (quadprog's
    regularisation, as above)."""
    jac = torch.tensor([[1.0, 0.0], [-2.0, 0.5]], dtype=torch.float64)
    weights = build("dualproj", 2).weights_of(jac @ jac.T)
    torch.testing.assert_close(weights, torch.tensor([2.0, 1.0], dtype=torch.float64), rtol=1e-3, atol=0)


def test_mgda_by_hand():
    """min over γ of ‖γ g1 + (1 − γ) g2‖² = γ² − 2γ(1 − γ) + 2(1 − γ)²: 10γ − 6 = 0, γ = 3/5; times 2."""
    torch.testing.assert_close(build("mgda", 2).weights_of(G), torch.tensor([1.2, 0.8], dtype=torch.float64))


def test_imtl_g_projects_equally_on_every_unit_gradient():
    """w ∝ G⁻¹ √diag(G) = [[2, 1], [1, 1]] (1, √2) = (2 + √2, 1 + √2), summing to T; d·g_i/‖g_i‖ all equal."""
    weights = build("imtl_g", 2).weights_of(G)
    raw = torch.tensor([2 + math.sqrt(2), 1 + math.sqrt(2)], dtype=torch.float64)
    torch.testing.assert_close(weights, 2 * raw / raw.sum())
    d = weights @ J
    projections = (J @ d) / J.norm(dim=1)
    torch.testing.assert_close(projections[0], projections[1])


def test_aligned_mtl_is_the_mean_of_the_aligned_gradients():
    """B = √λ_min V Λ^{-1/2} V^T makes B·J's Gramian λ_min·I (condition number 1); weights B·1/T, times T."""
    eigenvalues, vectors = torch.linalg.eigh(G)
    balance = eigenvalues.min().sqrt() * vectors @ torch.diag(eigenvalues.rsqrt()) @ vectors.T
    torch.testing.assert_close(balance @ G @ balance.T, eigenvalues.min() * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(build("aligned_mtl", 2).weights_of(G), balance @ torch.ones(2, dtype=torch.float64))


def test_nash_mtl_gives_every_task_the_same_share():
    """The bargaining solution has α_i (G α)_i equal for every task (1 before the rescaling to Σ α = T); TorchJD
    stops its sequence of convex solves at ‖G α − 1/α‖ < 1e-3 (normalised units): within 1e-3."""
    jac = torch.tensor([[1.0, 0.0], [-0.9, 0.5]], dtype=torch.float64)
    gram = jac @ jac.T
    alpha = build("nash_mtl", 2).weights_of(gram)
    assert alpha.sum().item() == pytest.approx(2.0)
    shares = alpha * (gram @ alpha)
    assert shares[0].item() == pytest.approx(shares[1].item(), rel=1e-3)
    assert (jac @ (alpha @ jac) > 0).all()  # a direction that helps both tasks


def test_upgrad_params_is_torchjds_mtl_backward():
    """Ours on the split graph vs TorchJD's mtl_backward + jac_to_grad on the unsplit model: the same trunk
    gradient (times T, our scale) and head gradients, to float64 rounding through the same QP. (On a trunk with
    one feature: mtl_backward differentiates each task with respect to all the features at once, so features
    computed from one another, as P3 → P4 → P5 are, would take it back through the trunk inside each task's
    gradient; the split graph's detached copies keep the tasks' feature gradients apart.)"""
    from torchjd.aggregation import UPGrad
    from torchjd.autojac import jac_to_grad, mtl_backward

    num_tasks = 3
    torch.manual_seed(0)
    model = SyntheticTrunk(num_tasks, d_in=6, hidden=8, d_out=3).double()
    x, targets = toy_batch(num_tasks, 0)
    x, targets = x.double(), [t.double() for t in targets]

    def task_losses(features):
        return [torch.mean((o - t) ** 2) for o, t in zip(model.heads(features), targets, strict=True)]

    shared = SharedGraph.split(model.trunk(x), model.shared_parameters())
    losses = task_losses(shared.detached)
    shared.terms = tuple(losses)
    ours_weights = build("upgrad_params", num_tasks).backward(torch.stack(losses), shared)
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    features = model.trunk(x)
    mtl_backward(task_losses(features), features=list(features))
    theirs_weights = jac_to_grad(model.trunk_parameters(), UPGrad())
    theirs = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.testing.assert_close(ours_weights, num_tasks * theirs_weights, rtol=1e-6, atol=1e-9)
    for name in ours:
        scale = num_tasks if name.startswith("layers.") else 1  # trunk: T·mean scale; heads: their own
        torch.testing.assert_close(ours[name], scale * theirs[name], rtol=1e-6, atol=1e-9)


# -- gradient side: ours against TorchJD's ------------------------------------------------------------------


def test_pcgrad_is_torchjds_pcgrad():
    """Two tasks: each projection is forced (one other task, no order to draw). TorchJD's aggregator on J,
    the registry's weighting and the formula agree to float64 rounding."""
    from torchjd.aggregation import PCGrad

    g1, g2 = J
    formula = (g1 - (g1 @ g2) / (g2 @ g2) * g2) + (g2 - (g2 @ g1) / (g1 @ g1) * g1)
    torch.testing.assert_close(PCGrad()(J), formula)
    torch.testing.assert_close(pcgrad(J, torch.Generator().manual_seed(0)), formula)
    torch.testing.assert_close(build("pcgrad", 2).weights_of(G) @ J, formula)


def test_pcgrads_draws_come_from_its_own_generator_and_leave_the_global_one_alone():
    before = torch.get_rng_state()
    balancer = build("pcgrad", 3)
    gram = torch.tensor([[2.0, -1.0, -0.5], [-1.0, 3.0, -1.0], [-0.5, -1.0, 1.0]], dtype=torch.float64)
    first = balancer.generator.get_state()
    balancer.weights_of(gram)
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.equal(balancer.generator.get_state(), first)  # three randperm draws were taken from it


@pytest.mark.parametrize(("c", "jac"), [
    (0.4, J),
    (0.8, J),
    (0.4, torch.tensor([[1.0, 0.0, 0.5], [-0.7, 0.3, 0.1], [0.2, -1.0, 0.4]], dtype=torch.float64)),
])
def test_cagrad_matches_torchjds_cagrad(c, jac):
    """The same combined gradient as TorchJD's CAGradWeighting times T/(1 + c²) (our rescaling), within 1e-4
    relative: both solve the dual to their solvers' tolerances, and the dual is flat near its minimum (w
    differs by ~1e-5 where the objectives agree to 1e-11)."""
    from torchjd.aggregation import CAGradWeighting

    num_tasks = jac.shape[0]
    gram = jac @ jac.T
    ours = cagrad_weights(gram, c) @ jac
    theirs = (num_tasks / (1 + c**2)) * CAGradWeighting(c)(gram) @ jac
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.norm().item())


# -- loss side ----------------------------------------------------------------------------------------------


def weights_of_scalariser(scalariser, losses: torch.Tensor) -> torch.Tensor:
    """∂ s(L) / ∂L: the weights a TorchJD scalariser gives the task losses."""
    point = losses.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(scalariser(point), point)
    return grad


def famo_step(balancer, losses: torch.Tensor) -> torch.Tensor:
    leaf = losses.clone().requires_grad_(True)
    weights = balancer.backward(leaf, NO_LOSSES)
    torch.testing.assert_close(leaf.grad, weights)  # the backward is Σ w_i L_i with these weights
    balancer.after_step(losses)
    return weights


def test_famo_first_two_steps_by_hand():
    """Step 0: z = (1/2, 1/2), w ∝ z/L = (1/4, 1) → 2·(0.2, 0.8). Step 1: δ = log L(0) − log L(1), the logits'
    gradient z ⊙ (δ − z·δ) = (+, −), Adam's first step −lr·sign(·) (the weight decay acts on ξ = 0: nothing);
    then w ∝ softmax(ξ)/L(1), times 2."""
    lr = 0.1
    balancer = build("famo", 2, weight_lr=lr, famo_gamma=1e-3)
    l0, l1 = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 0.4])
    torch.testing.assert_close(famo_step(balancer, l0), torch.tensor([0.4, 1.6]))
    delta = torch.log(l0) - torch.log(l1)  # (log 2, log 1.25): task 0 fell more
    z = torch.full((2,), 0.5)
    grad = z * (delta - z @ delta)
    assert grad[0] > 0 > grad[1]
    logits = -lr * torch.sign(grad)  # (−0.1, +0.1): task 1, which fell less, gains weight
    inverse = torch.softmax(logits, 0) / l1
    torch.testing.assert_close(famo_step(balancer, l1), 2 * inverse / inverse.sum(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(balancer.logits.detach(), logits, rtol=1e-6, atol=1e-7)


def test_famo_matches_torchjds_famo_step_for_step():
    """TorchJD's FAMO given, as the losses "after" each update, the next step's losses (what ours measures):
    the same weights (times T) at every step."""
    from torchjd.scalarization import FAMO

    generator = torch.Generator().manual_seed(0)
    sequence = torch.rand(8, 3, generator=generator) * torch.tensor([3.0, 1.0, 0.2]) + 0.05  # (steps, T) > 0
    ours = build("famo", 3, weight_lr=0.05, famo_gamma=1e-3)
    theirs = FAMO(3, lr=0.05, weight_decay=1e-3)
    for t in range(len(sequence)):
        if t > 0:
            theirs.update(sequence[t])
        expected = 3 * weights_of_scalariser(theirs, sequence[t])
        torch.testing.assert_close(famo_step(ours, sequence[t]), expected, rtol=1e-5, atol=1e-6)


def test_rlw_by_hand_and_as_torchjds_random():
    """w = T·softmax(λ), λ ~ N(0, I) from the balancer's generator: TorchJD's Random scalarises with the same
    weights (divided by T) when torch's global generator is seeded alike."""
    seed, losses = 7, torch.tensor([0.9, 2.0, 0.3])
    balancer = RLW(3, seed=seed)
    draws = torch.randn(2, 3, generator=torch.Generator().manual_seed(seed))
    for step in range(2):
        leaf = losses.clone().requires_grad_(True)
        weights = balancer.backward(leaf, NO_LOSSES)
        torch.testing.assert_close(weights, 3 * torch.softmax(draws[step], 0))
        torch.testing.assert_close(leaf.grad, weights)
    from torchjd.scalarization import Random

    torch.manual_seed(seed)
    torch.testing.assert_close(Random()(losses), (3 * torch.softmax(draws[0], 0) / 3 * losses).sum())


def test_rlw_seeds_from_torchs_global_seed():
    torch.manual_seed(11)
    a = build("rlw", 2).backward(torch.ones(2, requires_grad=True), NO_LOSSES)
    torch.manual_seed(12)
    b = build("rlw", 2).backward(torch.ones(2, requires_grad=True), NO_LOSSES)
    torch.manual_seed(11)
    c = build("rlw", 2).backward(torch.ones(2, requires_grad=True), NO_LOSSES)
    assert torch.equal(a, c) and not torch.equal(a, b)


# -- loss side: ours against TorchJD's, where they differ ---------------------------------------------------


def test_uncertainty_is_twice_torchjds_uw():
    """TorchJD's UW is Kendall's regression form ½·e^{−s}·L + ½·s; ours is e^{−s}·L + s: the network's weights and
    the log-variances' gradient are both exactly twice TorchJD's at the same s and L."""
    from torchjd.scalarization import UW

    log_vars, losses = torch.tensor([0.3, -0.2]), torch.tensor([1.5, 0.4])
    ours = build("uncertainty", 2, weight_lr=0.1)
    ours.log_vars.data = log_vars.clone()
    weights = ours.backward(losses.clone().requires_grad_(True), NO_LOSSES)
    theirs = UW(2)
    theirs.log_var.data = log_vars.clone()
    values = losses.clone().requires_grad_(True)
    theirs(values).backward()
    torch.testing.assert_close(weights, 2 * values.grad)
    torch.testing.assert_close(ours.pending, 2 * theirs.log_var.grad)


def test_dwa_agrees_with_torchjds_at_epoch_boundaries_and_slides_between():
    """With ``dwa_window`` = steps per epoch, our sliding windows cover TorchJD's two previous epochs exactly at
    an epoch's first step; at the next step ours has slid by one step and TorchJD's has not."""
    from torchjd.scalarization import DWA

    window = 3
    generator = torch.Generator().manual_seed(1)
    sequence = torch.rand(3 * window, 2, generator=generator) + 0.1  # three epochs of losses
    ours = build("dwa", 2, temperature=2.0, dwa_window=window)
    theirs = DWA(temperature=2.0)
    for t, losses in enumerate(sequence):
        expected = weights_of_scalariser(theirs, losses)
        weights = ours.backward(losses.clone().requires_grad_(True), NO_LOSSES)
        ours.after_step(losses)
        if t < 2 * window or t == 2 * window:  # uniform during two epochs, then the epoch boundary
            torch.testing.assert_close(weights, expected)
        elif t == 2 * window + 1:
            assert not torch.allclose(weights, expected)
        if t % window == window - 1:
            theirs.step()  # TorchJD's epoch end
