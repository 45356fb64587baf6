"""PCGrad and CAGrad: the projections and the dual solution against hand computations and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tests.balancing_toys import ToyModel, mse_losses, one_thread, toy_batch
from trainables.balancing.base import SharedGraph
from trainables.balancing.cagrad import cagrad_dual, cagrad_objective, cagrad_weights, project_simplex
from trainables.balancing.pcgrad import pcgrad
from trainables.balancing.registry import build


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def test_pcgrad_two_conflicting_gradients_match_the_formula():
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0], dtype=torch.float64)  # g1·g2 = −1 < 0
    formula = (g1 - (g1 @ g2) / (g2 @ g2) * g2) + (g2 - (g2 @ g1) / (g1 @ g1) * g1)
    result = pcgrad(torch.stack([g1, g2]), torch.Generator().manual_seed(0))
    torch.testing.assert_close(result, formula)
    torch.testing.assert_close(result, torch.tensor([0.5, 1.5], dtype=torch.float64))  # by hand


def test_pcgrad_leaves_agreeing_gradients_alone():
    grads = torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0]])  # g1·g2 = 1 > 0
    torch.testing.assert_close(pcgrad(grads, torch.Generator().manual_seed(0)), grads.sum(0))


def reference_pcgrad(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The paper's Algorithm 1 on vectors, drawing the task orders like the implementation."""
    projected = []
    for i in range(len(grads)):
        g = grads[i].clone()
        for j in torch.randperm(len(grads), generator=generator).tolist():
            if j != i and g @ grads[j] < 0:
                g = g - (g @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        projected.append(g)
    return torch.stack(projected).sum(0)


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_through_the_gram_matrix_equals_projecting_vectors(seed):
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(3, 7, generator=g, dtype=torch.float64)
    expected = reference_pcgrad(grads, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(pcgrad(grads, torch.Generator().manual_seed(seed)), expected)


def test_project_simplex_by_hand():
    np.testing.assert_allclose(project_simplex(np.array([0.5, 0.5])), [0.5, 0.5])
    np.testing.assert_allclose(project_simplex(np.array([2.0, 0.0])), [1.0, 0.0])
    # Σ = 0.6, all stay positive: each moves up by (1 − 0.6)/3.
    np.testing.assert_allclose(project_simplex(np.array([0.3, 0.3, 0.0])), [13 / 30, 13 / 30, 4 / 30])


def simplex_grid(num_tasks: int, points: int) -> np.ndarray:
    if num_tasks == 2:
        a = np.linspace(0, 1, points)
        return np.stack([a, 1 - a], 1)
    a = np.linspace(0, 1, points)
    return np.array([(x, y, 1 - x - y) for x, y in itertools.product(a, a) if x + y <= 1 + 1e-12])


@pytest.mark.parametrize(("num_tasks", "seed", "c"), [(2, 0, 0.4), (2, 1, 1.0), (3, 2, 0.4), (3, 3, 0.8)])
def test_cagrad_dual_finds_the_grid_minimum(num_tasks, seed, c):
    rng = np.random.default_rng(seed)
    grads = rng.normal(size=(num_tasks, 5))
    grads[1] = -0.8 * grads[0] + 0.3 * grads[1]  # make tasks 0 and 1 conflict
    gram = grads @ grads.T
    w = cagrad_dual(gram, c)
    assert np.all(w >= 0) and np.isclose(w.sum(), 1)
    grid = min(cagrad_objective(p, gram, c) for p in simplex_grid(num_tasks, 401 if num_tasks == 2 else 151))
    assert cagrad_objective(w, gram, c) <= grid + 1e-9 * abs(grid) + 1e-12


def test_cagrad_with_c_zero_is_the_plain_sum():
    gram = torch.tensor([[1.0, -0.5], [-0.5, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(cagrad_weights(gram, 0.0), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_cagrad_update_maximises_the_worst_task_within_the_ball(num_tasks):
    """d* = argmax_{‖d − g0‖ ≤ c‖g0‖} min_i g_i·d (the paper's primal); checked against sampled d."""
    c = 0.5
    rng = np.random.default_rng(num_tasks)
    grads = rng.normal(size=(num_tasks, 4))
    grads[1] = -0.7 * grads[0] + 0.2 * grads[1]
    weights = cagrad_weights(torch.from_numpy(grads @ grads.T), c).numpy()
    d = (weights @ grads) * (1 + c**2) / num_tasks  # undo the rescaling: the primal's d
    g0 = grads.mean(0)
    radius = c * np.linalg.norm(g0)
    assert np.linalg.norm(d - g0) == pytest.approx(radius, rel=1e-6)
    worst = (grads @ d).min()
    directions = rng.normal(size=(5000, 4))
    samples = g0 + radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)  # on the sphere
    assert worst >= (samples @ grads.T).min(1).max() - 1e-9
    assert worst > (grads @ g0).min()  # better for the worst task than the mean gradient


@pytest.mark.parametrize("strategy", ["pcgrad", "cagrad"])
def test_surgery_sends_each_head_its_own_task_gradient(strategy):
    num_tasks = 3
    torch.manual_seed(0)
    model = ToyModel(num_tasks).double()
    x, targets = toy_batch(num_tasks, 0)
    x, targets = x.double(), [t.double() for t in targets]
    shared = SharedGraph.split(model.trunk(x), model.shared_parameters())
    build(strategy, num_tasks).backward(mse_losses(model.heads(shared.detached), targets), shared)
    losses = mse_losses(model.heads(model.trunk(x)), targets)
    heads = list(model.task_heads.parameters()) + list(model.skip.parameters())
    expected = torch.autograd.grad(losses.sum(), heads)  # unit weights: head i sees only ∇L_i
    for p, e in zip(heads, expected, strict=True):
        torch.testing.assert_close(p.grad, e)
