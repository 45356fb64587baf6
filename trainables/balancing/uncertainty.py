"""Homoscedastic-uncertainty weighting: each task's weight is a learned inverse variance."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, Hparam, SharedGraph, weighted_backward
from trainables.balancing.learned import place
from trainables.balancing.registry import register


@register("uncertainty")
class Uncertainty(Balancer):
    """Uncertainty weighting (Kendall, Gal, Cipolla, CVPR 2018, arXiv:1705.07115).

    Learns one log-variance s_i per task and minimises Σ_i exp(−s_i)·L_i + s_i. The paper's exact
    forms differ per likelihood (½·exp(−s)·L + ½·s for regression, exp(−s)·L + ½·s for
    classification); like most re-implementations this uses the one simplified form for every task,
    whose optimum for fixed L_i is exp(s_i) = L_i, i.e. w_i = 1/L_i.

    The network's gradient is that of Σ_i w_i L_i with w_i = exp(−s_i) as constants; the s_i take
    their own Adam step (lr ``weight_lr``) on ∂/∂s_i = 1 − exp(−s_i)·L_i after the optimizer step
    (:meth:`after_step`), using the losses of that step. s_i start at 0 (w_i = 1). Returns exp(−s).

    Why not TorchJD's ``torchjd.scalarization.UW``: it is the regression form ½·exp(−s_i)·L_i + ½·s_i, so
    its network weights and the gradient on s are exactly half of these (tests/test_balancing_torchjd.py),
    and it leaves s to the model's optimizer (its learning rate, weight decay and clip), where this one
    gives s its own Adam at ``weight_lr``. Published results rest on this form and its ``weight_lr``.

    Hyperparameters: ``weight_lr``.
    """

    hparams = (
        Hparam("weight_lr", 0.025, "Adam learning rate of the log-variances s_i", low=0.0, low_open=True,
               search=(1e-3, 1e-1, True)),
    )

    def __init__(self, num_tasks: int, *, weight_lr: float) -> None:
        super().__init__(num_tasks)
        self.log_vars = torch.zeros(num_tasks, requires_grad=True)  # (T,) s_i
        self.optimizer = torch.optim.Adam([self.log_vars], lr=weight_lr)
        self.pending: Tensor | None = None  # (T,) ∂/∂s of the last backward, applied in after_step

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        place(self.log_vars, self.optimizer, losses.device)
        weights = torch.exp(-self.log_vars.detach())  # (T,)
        weighted_backward(losses, weights, shared)
        with torch.enable_grad():
            objective = (torch.exp(-self.log_vars) * losses.detach().float() + self.log_vars).sum()
            (self.pending,) = torch.autograd.grad(objective, self.log_vars)
        return weights

    def after_step(self, losses: Tensor) -> None:
        if self.pending is None:
            return
        self.log_vars.grad = torch.nan_to_num(self.pending, nan=0.0, posinf=0.0, neginf=0.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.pending = None

    def state_dict(self) -> dict:
        return {"log_vars": self.log_vars.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.log_vars.data = state["log_vars"].to(self.log_vars.device, self.log_vars.dtype).clone()
        self.optimizer.load_state_dict(state["optimizer"])
        self.pending = None
