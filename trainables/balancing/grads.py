"""Per-task gradients with respect to the shared features ("representation gradients").

Helpers shared by the strategies that need each task's gradient separately (GradNorm, PCGrad,
CAGrad). They all work on the split graph of :class:`~trainables.balancing.base.SharedGraph`: one
backward pass through each task's head gives that task's gradient with respect to the shared
features, and one combined gradient is then sent through the trunk. A task's "gradient" here is a
tuple of tensors, one per shared feature map, shapes (B, C_l, H_l, W_l).
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import SharedGraph

TaskGrads = tuple[Tensor, ...]


def task_feature_grads(losses: Tensor, shared: SharedGraph, weights: Tensor | None = None) -> list[TaskGrads]:
    """Backward each (weighted) task loss through the heads; return d(w_i L_i)/d features per task.

    losses: (T,) attached task losses. weights: (T,) constants (default 1). The head parameters
    accumulate Σ_i w_i ∇L_i as a side effect, which is what every strategy here wants for them (each
    head sees its own task's gradient). The trunk is untouched. Returns T tuples of feature grads.

    Cost: each head's backward runs once when ``shared.terms`` holds the unstacked task losses (the
    engine sets them). Without them a backward from ``losses[i]`` passes through the stack that
    built ``losses``, whose backward sends a dense zero gradient down every *other* head as well.
    """
    num_tasks = losses.shape[0]
    if weights is None:
        weights = torch.ones(num_tasks, device=losses.device, dtype=losses.dtype)
    weights = weights.detach().to(device=losses.device, dtype=losses.dtype)
    out = []
    for i in range(num_tasks):
        # The heads' graph is kept until the last task: the (T,) loss tensor is one graph node.
        term = shared.task_term(losses, i)
        out.append(shared.head_backward(weights[i] * term, retain_graph=i < num_tasks - 1))
    return out


def gram(task_grads: list[TaskGrads]) -> Tensor:
    """(T, T) float64 matrix of inner products g_i·g_j over all flattened feature gradients, on CPU.

    Everything PCGrad and CAGrad decide depends on the task gradients only through this matrix, so
    the (large) gradients stay on their device and only T² numbers travel to the CPU.
    """
    num_tasks = len(task_grads)
    rows = []
    for i in range(num_tasks):
        for j in range(num_tasks):
            if j < i:
                rows.append(rows[j * num_tasks + i])  # symmetric: reuse g_j·g_i
                continue
            parts = [torch.dot(_wide(a), _wide(b)) for a, b in zip(task_grads[i], task_grads[j], strict=True)]
            rows.append(torch.stack(parts).sum() if parts else torch.zeros(()))
    return torch.stack(rows).reshape(num_tasks, num_tasks).double().cpu()


def _wide(t: Tensor) -> Tensor:
    """Flattened, at least float32 (bf16 feature gradients under autocast would lose the dot products)."""
    return t.reshape(-1).to(torch.promote_types(t.dtype, torch.float32))


def combine(task_grads: list[TaskGrads], coeffs: Tensor) -> TaskGrads:
    """Σ_i c_i g_i, feature by feature. coeffs: (T,). Returns one tuple of feature grads."""
    num_features = len(task_grads[0]) if task_grads else 0
    out = []
    for f in range(num_features):
        ref = task_grads[0][f]
        c = coeffs.to(device=ref.device, dtype=ref.dtype)
        out.append(sum(c[i] * task_grads[i][f] for i in range(len(task_grads))))
    return tuple(out)
