"""The plain sum Σ L_i: the baseline that tuned studies find hard to beat."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, SharedGraph, weighted_backward
from trainables.balancing.registry import register


@register("equal")
class Equal(Balancer):
    """Equal weighting, w_i = 1 (Kurin et al., NeurIPS 2022; Xin et al., NeurIPS 2022).

    No hyperparameters.
    """

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        weights = torch.ones(self.num_tasks, device=losses.device)
        weighted_backward(losses, weights, shared)
        return weights
