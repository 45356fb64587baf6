"""PCGrad: project each task's gradient off the gradients it conflicts with, then sum (TorchJD's PCGrad)."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.gramian import GramianBalancer
from trainables.balancing.registry import register


def pcgrad_weights(gram_matrix: Tensor, generator: torch.Generator) -> Tensor:
    """PCGrad's result as weights on the original task gradients, by ``torchjd.aggregation.PCGradWeighting``.

    gram_matrix: (T, T) inner products g_i·g_j. For every task i, in a random order of the other tasks
    j: if g_i^PC·g_j < 0, then g_i^PC ← g_i^PC − (g_i^PC·g_j / ‖g_j‖²) g_j. Each projection subtracts a
    multiple of some g_j, so Σ_i g_i^PC = Σ_j c_j g_j, and every dot product needed comes from the Gram
    matrix. Returns c, (T,) float64.

    TorchJD draws the task orders from torch's global generator; here they come from ``generator``: the
    weighting runs on a fork of the global generator set to ``generator``'s state, whose state is then
    taken back. The draws (one ``randperm(T)`` per task, in task order) are those the hand-written
    version this replaced made from ``generator`` itself, so a run's orders are unchanged.
    """
    from torchjd.aggregation import PCGradWeighting

    with torch.random.fork_rng(devices=[]):  # the CPU generator only; the global state is restored after
        torch.set_rng_state(generator.get_state())
        weights = PCGradWeighting()(gram_matrix.double().cpu())
        generator.set_state(torch.get_rng_state())
    return weights


def pcgrad(grads: Tensor, generator: torch.Generator) -> Tensor:
    """PCGrad on explicit vectors: grads (T, D) → Σ_i g_i^PC, (D,). Same algorithm as the balancer."""
    weights = pcgrad_weights(grads.double() @ grads.double().T, generator)
    return (weights.to(grads.dtype)[:, None] * grads).sum(0)


@register("pcgrad")
class PCGrad(GramianBalancer):
    """PCGrad, gradient surgery (Yu, Kumar, Gupta, Levine, Hausman, Finn, NeurIPS 2020, arXiv:2001.06782).

    Representation-gradient variant (``level = "features"``, trainables/balancing/gramian.py): g_i is
    task i's gradient with respect to the shared features, not with respect to the shared parameters as
    in the paper; the projected sum is sent through the trunk once, so the trunk's gradient is
    J^T Σ g_i^PC (J the features' Jacobian). Per-parameter PCGrad would project J^T g_i instead; since
    J^T does not preserve inner products the two generally differ, and the per-parameter form needs T
    backward passes through the trunk. Each head gets its own task's gradient unchanged.

    The weighting is TorchJD's (:func:`pcgrad_weights`; tests/test_balancing_torchjd.py holds it to the
    paper's Algorithm 1 on vectors and to the hand formula). Its weights are already on the study's
    scale (Σ g_i^PC: 1 per task when nothing conflicts), so ``mean_scale`` is off. The task order of
    every projection round is drawn from the strategy's own seeded generator (``seed``), saved in
    :meth:`state_dict`. Returns the weights c with Σ_i g_i^PC = Σ_i c_i g_i.

    Hyperparameters: none (``seed`` fixes the random projection order).
    """

    mean_scale = False

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.generator = torch.Generator().manual_seed(seed)

    def weighting(self, gram_matrix: Tensor) -> Tensor:
        return pcgrad_weights(gram_matrix, self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
