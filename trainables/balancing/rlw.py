"""Random loss weighting: fresh random task weights every step."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, SharedGraph, weighted_backward
from trainables.balancing.registry import register


@register("rlw")
class RLW(Balancer):
    """Random Loss Weighting (Lin, Ye, Xu, Shi, Zhang, TMLR 2022, arXiv:2111.10603, Algorithm 2).

    Every step draws λ ~ N(0, I_T) and weights the losses by w = T·softmax(λ): positive weights, a new
    random point of the simplex each step, scaled by T to ``equal``'s Σ L_i (the paper's weights sum to
    1). The paper's claim, the reason it is here: on average over its draws this matches or beats many
    balancers, a litmus test for any method that claims to beat equal weighting.

    The draws come from the balancer's own generator (saved in :meth:`state_dict`, so a resumed run
    draws what the uninterrupted one would), seeded with ``seed``, by default with the seed torch's
    global generator was last seeded with (``torch.initial_seed()``: the engine seeds it with
    ``train.seed`` before it builds the balancer), so each seed of a study draws its own sequence
    without consuming the global generator's stream.

    TorchJD's ``torchjd.scalarization.Random`` computes the same weights from torch's global generator
    (tests/test_balancing_torchjd.py: same draws, same scalarisation); the one line is kept here for the
    generator a checkpoint can hold.

    Hyperparameters: none.
    """

    def __init__(self, num_tasks: int, seed: int | None = None) -> None:
        super().__init__(num_tasks)
        self.generator = torch.Generator().manual_seed(torch.initial_seed() if seed is None else seed)

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        draw = torch.randn(self.num_tasks, generator=self.generator)  # (T,) λ, float32 on the CPU
        weights = (self.num_tasks * torch.softmax(draw, dim=0)).to(losses.device)
        weighted_backward(losses, weights, shared)
        return weights

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
