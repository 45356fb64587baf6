"""CAGrad: the update direction that best improves the worst task, within a ball around the mean gradient."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from trainables.balancing.base import Hparam
from trainables.balancing.gramian import GramianBalancer
from trainables.balancing.registry import register


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of v (T,) onto {w : w >= 0, Σ w = 1} (sort-based, Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    index = np.arange(1, len(v) + 1)
    rho = index[u - cumulative / index > 0][-1]
    return np.maximum(v - cumulative[rho - 1] / rho, 0.0)


def cagrad_objective(w: np.ndarray, gram_matrix: np.ndarray, c: float) -> float:
    """The dual F(w) = g_w·g_0 + c‖g_0‖·‖g_w‖ with g_w = Σ w_i g_i and g_0 the mean gradient."""
    num_tasks = len(w)
    g0_norm = np.sqrt(max(gram_matrix.mean(), 0.0))
    return float(w @ gram_matrix.sum(1) / num_tasks + c * g0_norm * np.sqrt(max(w @ gram_matrix @ w, 0.0) + 1e-12))


def cagrad_dual(gram_matrix: np.ndarray, c: float, max_iter: int = 200, tol: float = 1e-10) -> np.ndarray:
    """Minimise :func:`cagrad_objective` over the simplex; returns w (T,).

    Projected gradient descent with backtracking on the (T, T) Gram matrix, rescaled to unit mean
    diagonal (the minimiser does not depend on the scale). F is convex; T is 2 or 3 here, so this
    converges in a few dozen iterations of microsecond numpy work.
    """
    num_tasks = gram_matrix.shape[0]
    scale = float(np.mean(np.diag(gram_matrix)))
    w = np.full(num_tasks, 1.0 / num_tasks)
    if scale <= 0:
        return w
    a = gram_matrix / scale
    linear = a.sum(1) / num_tasks  # ∂(g_w·g_0)/∂w
    radius = c * np.sqrt(max(a.mean(), 0.0))  # c‖g_0‖

    def f(x: np.ndarray) -> float:
        return cagrad_objective(x, a, c)

    value, step = f(w), 1.0
    for _ in range(max_iter):
        grad = linear + radius * (a @ w) / np.sqrt(max(w @ a @ w, 0.0) + 1e-12)
        while True:
            candidate = project_simplex(w - step * grad)
            move = candidate - w
            new_value = f(candidate)
            if new_value <= value + grad @ move + (move @ move) / (2 * step) or step < 1e-12:
                break
            step *= 0.5
        w, value = candidate, new_value
        if move @ move < tol**2:
            break
        step *= 2.0  # let the step grow back after a cautious stretch
    return w


def cagrad_weights(gram_matrix: Tensor, c: float) -> Tensor:
    """CAGrad's update as weights on the task gradients; gram_matrix (T, T) → (T,) float64.

    With w* the dual solution, g_w = Σ w*_i g_i and λ = c‖g_0‖/‖g_w‖, the update is
    d = T·(g_0 + λ g_w)/(1 + c²) = Σ_i (1 + T λ w*_i)/(1 + c²) · g_i. The factor T makes c = 0 the
    plain sum Σ g_i (the ``equal`` baseline) instead of the mean; 1/(1 + c²) is the paper's default
    rescaling.
    """
    a = gram_matrix.double().cpu().numpy()
    num_tasks = a.shape[0]
    w = cagrad_dual(a, c)
    g0_norm = np.sqrt(max(a.mean(), 0.0))
    gw_norm = np.sqrt(max(w @ a @ w, 0.0))
    lam = c * g0_norm / gw_norm if gw_norm > 0 else 0.0
    return torch.from_numpy((1.0 + num_tasks * lam * w) / (1.0 + c**2))


@register("cagrad")
class CAGrad(GramianBalancer):
    """Conflict-Averse Gradient descent (Liu, Liu, Jin, Stone, Liu, NeurIPS 2021, arXiv:2110.14048).

    Finds d maximising min_i g_i·d within ‖d − g_0‖ ≤ c‖g_0‖ (g_0 the mean task gradient) through its
    T-dimensional dual over the simplex (:func:`cagrad_dual`), solved on the Gram matrix of the task
    gradients. Like ``pcgrad`` this is the representation-gradient variant (``level = "features"``,
    trainables/balancing/gramian.py): the g_i are the tasks' gradients with respect to the shared
    features, and d is sent through the trunk once; the paper works on the shared parameters'
    gradients, which would need T backward passes through the trunk (and the two differ because the
    features' Jacobian does not preserve inner products). Each head gets its own task's gradient
    unchanged. Returns the weights c_i with d = Σ_i c_i g_i.

    Why not TorchJD's ``CAGradWeighting``: it computes the same update — its weights times
    T/(1 + c²), this balancer's rescaling, agree with these to the solvers' tolerance
    (tests/test_balancing_torchjd.py: the same combined gradient within 1e-4 relative) — but it builds
    and solves a new cvxpy problem (CLARABEL) on every call: a median 9 ms a step against 0.16 ms for
    this projected-gradient solve on the same T×T matrix (30 random conflicting 2-task Gramians, the
    development box under load; this one's slowest 6 ms, TorchJD's 18 ms; docs/benchmarks.md), a cost
    that would be charged to CAGrad in every step-time ratio the study reports. It also returns a zero
    update when ‖g_w‖ < 1e-4 relative to the Gramian's trace, where this one keeps the plain sum. So this
    stays.

    Hyperparameters: ``cagrad_c`` (c >= 0; paper: 0.4 on NYUv2; c = 0 is the plain sum).
    """

    mean_scale = False  # cagrad_weights is on the study's scale already (c = 0: the plain sum)
    hparams = (
        Hparam("cagrad_c", 0.4, "radius of the conflict-averse ball (0: the plain sum)", low=0.0,
               search=(0.1, 0.9, False)),
    )

    def __init__(self, num_tasks: int, *, cagrad_c: float) -> None:
        super().__init__(num_tasks)
        self.c = cagrad_c

    def weighting(self, gram_matrix: Tensor) -> Tensor:
        return cagrad_weights(gram_matrix, self.c)
