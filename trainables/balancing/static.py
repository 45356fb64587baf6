"""Fixed task weights: the points of the static-weight front a study can trace.

(search_spaces/static.py, the same name, is the space that sweeps these weights.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, Hparam, SharedGraph, weighted_backward
from trainables.balancing.registry import register


@register("static")
class Static(Balancer):
    """Fixed weights w = [w_det, w_cls, w_cls, ...]: task 0 (detection) gets ``w_det``, every other
    task (classification) gets ``w_cls``.

    The classic hand-tuned weighted sum Σ w_i L_i (e.g. Kendall et al., CVPR 2018, Fig. 1, which
    sweeps exactly this front). Hyperparameters: ``w_det`` >= 0, ``w_cls`` >= 0. With more than two
    tasks the rule above is what is applied (the engine's tasks are [det, view]).
    """

    same_at_defaults = "equal"  # w_det = w_cls = 1: Σ L_i, equal's loss (tests/test_tuned.py holds them equal)
    hparams = (
        Hparam("w_det", 1.0, "weight of the detection loss", low=0.0),
        # only the ratio w_cls / w_det matters to the direction of a step: one of the two is searched. The low end
        # was 0.05 until the searched verdict (docs/results/searched-5x8-160) chose 0.057 in one fold: widened
        Hparam("w_cls", 1.0, "weight of every other (classification) loss", low=0.0, search=(0.02, 20.0, True)),
    )

    def __init__(self, num_tasks: int, *, w_det: float, w_cls: float) -> None:
        super().__init__(num_tasks)
        self.weights = torch.tensor([w_det] + [w_cls] * (num_tasks - 1))  # (T,)

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        weights = self.weights.to(losses.device)
        weighted_backward(losses, weights, shared)
        return weights
