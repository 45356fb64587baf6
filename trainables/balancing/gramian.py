"""Gradient-side balancers as weightings of the T×T Gramian of the task gradients (TorchJD's shape).

Every gradient-side method here (PCGrad, CAGrad, UPGrad, Aligned-MTL, Nash-MTL, IMTL-G, MGDA, DualProj)
decides its update from the task gradients g_1..g_T only through their Gramian G_ij = g_i·g_j: a
*weighting* maps G (T, T) to weights w (T,), and the update is Σ_i w_i g_i. GradNorm's ‖∇_W L_i‖ is
the same kind of statistic (the diagonal of the Gramian on W). TorchJD (``torchjd.aggregation``)
implements most of these methods as such weightings; the balancers here hand it the Gramian.

Two levels a g_i can live on (``GramianBalancer.level``):

- ``"features"`` (the default, the study's choice): g_i is task i's gradient with respect to the shared
  features (all feature maps of the batch, flattened), read from one backward pass through each head
  on the split graph (``SharedGraph``). G is T×T and costs T² dot products over the feature maps; the
  combined feature gradient Σ w_i g_i goes through the trunk once, so a step costs one forward and one
  backward pass like ``equal``. The trunk receives J^T Σ w_i g_i (J the features' Jacobian): the
  weighting sees the tasks' conflict at the representation, not at the parameters — J^T does not
  preserve inner products, so the weights generally differ from the parameter-level ones.
- ``"parameters"``: g_i is task i's gradient with respect to every trunk parameter (the rows of the
  shared parameters' Jacobian, as in the papers and in ``torchjd.autojac.mtl_backward``). TorchJD's
  ``autojac.jac`` pushes the stacked feature gradients (T, ...) through the trunk, one backward pass
  per task (``torch.vmap`` cannot batch them on an autocast graph), into one (T, *p.shape) Jacobian per
  trunk parameter; their Gramians are summed (as ``jac_to_grad(..., optimize_gramian_computation=True)``
  does), weighted, and Σ w_i J_i is written into ``.grad``. Memory grows by T·P numbers and time by up
  to T trunk backward passes (``python -m study.bench balancers``: ``upgrad_params`` beside ``upgrad``).
  Not ``mtl_backward`` itself: it differentiates each task with respect to all the features at once, and
  ours are computed from one another (P3 → P4 → P5), so each task's gradient would run back through the
  trunk; the split graph's detached copies keep the tasks' feature gradients apart (its parity with
  ``mtl_backward`` where that is valid, one feature: tests/test_balancing_torchjd.py).

Either way each head gets its own task's gradient at weight 1 (as in ``mtl_backward``: a head's
parameters are not shared, so there is nothing to balance there); the returned weights are those the
trunk received. Without a trunk to send a gradient to (``shared.active`` False) the step is the plain
sum, weights 1.

Scale: a weighting from the papers returns weights on the scale of the *mean* gradient (they sum to 1
when nothing conflicts: UPGrad, DualProj, MGDA, IMTL-G, Aligned-MTL). ``mean_scale`` multiplies them
by T, so that with no conflict (orthogonal task gradients of equal norm) every one of them is exactly
``equal``'s Σ L_i, the baseline the study's learning rates and gradient clip were tuned on.

TorchJD is imported when a balancer is built, not when this package is: the registry (and with it the
config, which reads every balancer's hyperparameters) loads on a box with torch alone.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, Literal

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, SharedGraph, weighted_backward
from trainables.balancing.grads import TaskGrads, combine, gram, task_feature_grads


class GramianBalancer(Balancer):
    """A balancer whose trunk update is Σ_i w_i g_i with w = ``weights_of(G)``, G the task gradients' Gramian.

    Subclasses implement :meth:`weighting` (most with a TorchJD weighting) and may set ``level`` and
    ``mean_scale``; see the module docstring for both.
    """

    level: ClassVar[Literal["features", "parameters"]] = "features"
    mean_scale: ClassVar[bool] = True  # multiply the weighting's weights by T (see the module docstring)

    @abstractmethod
    def weighting(self, gram_matrix: Tensor) -> Tensor:
        """gram_matrix (T, T) float64 on the CPU → (T,) weights, on the paper's scale."""

    def weights_of(self, gram_matrix: Tensor) -> Tensor:
        """(T, T) Gramian → (T,) float64 weights on the CPU, on the study's scale."""
        weights = self.weighting(gram_matrix.double().cpu()).double().cpu()
        return weights * self.num_tasks if self.mean_scale else weights

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        ones = torch.ones(self.num_tasks, device=losses.device)
        if not shared.active:
            weighted_backward(losses, ones, shared)
            return ones
        feature_grads = task_feature_grads(losses, shared)  # heads get their own ∇L_i
        if self.level == "parameters":
            weights = self._parameter_step(feature_grads, shared)
        else:
            weights = self.weights_of(gram(feature_grads))  # (T,)
            shared.trunk_backward(combine(feature_grads, weights))
        return weights.to(device=losses.device, dtype=losses.dtype)  # float32 in the engine (its losses)

    def _parameter_step(self, feature_grads: list[TaskGrads], shared: SharedGraph) -> Tensor:
        """Weigh the trunk parameters' Jacobian, built by TorchJD from the task feature gradients; returns w."""
        from torchjd.autojac import jac

        features = shared.attached_inputs()
        params = trunk_leaves(features)
        rows = [torch.stack(per_feature) for per_feature in zip(*feature_grads, strict=True)]  # (T, *f.shape)
        # one row at a time (T backward passes): torch.vmap's batched backward fails on an autocast graph
        # ("expected scalar type BFloat16 but found Float"), and bf16 is the default precision
        jacobians = jac(list(features), params, jac_outputs=rows, parallel_chunk_size=1)  # (T, *p.shape) each
        # the Gramian as a sum over parameters: the (T, P) matrix is never concatenated (as jac_to_grad's
        # optimize_gramian_computation does)
        gram_matrix = sum(_self_gram(j) for j in jacobians)  # (T, T)
        weights = self.weights_of(gram_matrix)  # (T,) float64, CPU
        for p, j in zip(params, jacobians, strict=True):
            g = torch.tensordot(weights.to(device=j.device, dtype=j.dtype), j, dims=1)  # (*p.shape,)
            p.grad = g if p.grad is None else p.grad + g
        return weights


def trunk_leaves(features: tuple[Tensor, ...]) -> list[Tensor]:
    """The leaf tensors requiring grad that ``features`` were computed from (the trunk's parameters).

    A walk of the autograd graph back from the features, in a fixed order (first reached first).
    """
    leaves: dict[int, Tensor] = {}
    seen: set = set()  # the nodes themselves (hashed by identity), kept alive so no id is reused
    stack = [f.grad_fn for f in reversed(features) if f.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node: the leaf it accumulates into
        if variable is not None:
            leaves.setdefault(id(variable), variable)
        stack.extend(n for n, _ in reversed(node.next_functions) if n is not None)
    return list(leaves.values())


def _self_gram(jacobian: Tensor) -> Tensor:
    """(T, *shape) → (T, T) inner products of its rows, at least in float32."""
    rows = jacobian.reshape(jacobian.shape[0], -1).to(torch.promote_types(jacobian.dtype, torch.float32))
    return rows @ rows.T
