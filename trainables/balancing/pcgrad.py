"""PCGrad: project each task's gradient off the gradients it conflicts with, then sum."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, SharedGraph, weighted_backward
from trainables.balancing.grads import combine, gram, task_feature_grads
from trainables.balancing.registry import register


def pcgrad_weights(gram_matrix: Tensor, generator: torch.Generator) -> Tensor:
    """PCGrad's result as weights on the original task gradients.

    gram_matrix: (T, T) inner products g_i·g_j. For every task i, in a random order of the other
    tasks j: if g_i^PC·g_j < 0, then g_i^PC ← g_i^PC − (g_i^PC·g_j / ‖g_j‖²) g_j. Each projection
    subtracts a multiple of some g_j, so g_i^PC = Σ_j C_ij g_j and Σ_i g_i^PC = Σ_j c_j g_j with
    c = column sums of C, and every dot product needed is C_i·gram[:, j]. Returns c, (T,) float64.
    """
    gram_matrix = gram_matrix.double().cpu()
    num_tasks = gram_matrix.shape[0]
    coeffs = torch.eye(num_tasks, dtype=torch.float64)  # (T, T) row i: g_i^PC in terms of the g_j
    for i in range(num_tasks):
        for j in torch.randperm(num_tasks, generator=generator).tolist():
            if j == i or gram_matrix[j, j] <= 0:
                continue
            dot = coeffs[i] @ gram_matrix[:, j]  # g_i^PC · g_j
            if dot < 0:
                coeffs[i, j] -= dot / gram_matrix[j, j]
    return coeffs.sum(0)


def pcgrad(grads: Tensor, generator: torch.Generator) -> Tensor:
    """PCGrad on explicit vectors: grads (T, D) → Σ_i g_i^PC, (D,). Same algorithm as the balancer."""
    weights = pcgrad_weights(grads.double() @ grads.double().T, generator)
    return (weights.to(grads.dtype)[:, None] * grads).sum(0)


@register("pcgrad")
class PCGrad(Balancer):
    """PCGrad, gradient surgery (Yu, Kumar, Gupta, Levine, Hausman, Finn, NeurIPS 2020, arXiv:2001.06782).

    Representation-gradient variant: g_i is task i's gradient with respect to the shared features
    (all feature maps of the batch, flattened), not with respect to the shared parameters as in the
    paper. The projected sum is sent through the trunk once, so the trunk's gradient is J^T Σ g_i^PC
    (J the features' Jacobian). Per-parameter PCGrad would project J^T g_i instead; since J^T does
    not preserve inner products the two generally differ (they agree when J^T is an isometry), and
    the per-parameter form needs T full backward passes through the trunk. Each head gets its own
    task's gradient unchanged.

    The task order of every projection round is drawn from the strategy's own seeded generator
    (``seed``), saved in :meth:`state_dict`. Returns the weights c with Σ_i g_i^PC = Σ_i c_i g_i (what
    the trunk effectively received; 1 for tasks that conflicted with nothing).

    Hyperparameters: none (``seed`` fixes the random projection order).
    """

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.generator = torch.Generator().manual_seed(seed)

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        ones = torch.ones(self.num_tasks, device=losses.device)
        if not shared.active:
            weighted_backward(losses, ones, shared)
            return ones
        feature_grads = task_feature_grads(losses, shared)  # heads get their own ∇L_i
        weights = pcgrad_weights(gram(feature_grads), self.generator)  # (T,)
        shared.trunk_backward(combine(feature_grads, weights))
        return weights.float().to(losses.device)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
