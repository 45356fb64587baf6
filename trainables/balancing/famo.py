"""FAMO: learn task weights so that every task's loss falls at the same relative rate, from losses alone."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, Hparam, SharedGraph, weighted_backward
from trainables.balancing.learned import place
from trainables.balancing.registry import register

EPSILON = 1e-8  # keeps log(L_i) finite at a zero loss (the paper's and TorchJD's constant)


@register("famo")
class FAMO(Balancer):
    """FAMO, Fast Adaptive Multitask Optimization (Liu, Feng, Stone, Liu, NeurIPS 2023, arXiv:2306.03792).

    Loss-side: O(1) in the number of tasks, no per-task gradient. With learnable logits ξ (T,), z =
    softmax(ξ) and the losses L_i of the step:

    - the network's gradient is that of c·Σ_i z_i log(L_i + ε) with c = (Σ_j z_j / (L_j + ε))^{-1} held
      constant, i.e. Σ_i w_i ∇L_i with w_i = c·z_i / (L_i + ε) (Σ w_i = 1: a convex combination of the
      log-loss gradients, which makes every task's log-loss fall at about the same rate);
    - the logits learn from how much each log-loss fell over the update: with
      δ_i = log(L_i(before) + ε) − log(L_i(after) + ε), ξ takes one Adam step (lr ``weight_lr``, weight
      decay ``famo_gamma``, the paper's γ) on the gradient ∂(z·δ)/∂ξ = z ⊙ (δ − z·δ), so a task whose
      loss fell less gains weight.

    "After" is measured on the next step's batch: the balancer never runs the model, so instead of the
    paper's code re-evaluating the same batch after the optimizer step (one more forward pass per step),
    δ compares this step's losses with the next step's. That adds the batch-to-batch noise of the
    losses to δ, which Adam's running averages smooth. The logit update for step t is made at the start
    of step t + 1's backward, before its weights are read, so the order of updates is the paper's.

    The weights are multiplied by T (Σ w_i = T), the scale of ``equal``'s Σ L_i that the study's learning
    rates were tuned on. Losses here are non-negative, so the paper's lower bounds b_i are 0. Logits and
    Adam state are float32 whatever the autocast (the losses arrive as float32).

    Why not TorchJD's ``torchjd.scalarization.FAMO``: it computes the same thing (tests/test_balancing_torchjd.py
    holds this balancer's weights to it step for step when TorchJD is given the same "after" losses), but
    it keeps its Adam and the last losses in private attributes, so a checkpoint could not restore them
    through its API; this balancer holds those three tensors itself and saves them (:meth:`state_dict`).

    Hyperparameters: ``weight_lr`` (paper: 0.025), ``famo_gamma`` (paper: 1e-3).
    """

    hparams = (
        Hparam("weight_lr", 0.025, "Adam learning rate of the task-weight logits", low=0.0, low_open=True,
               search=(1e-3, 1e-1, True)),
        Hparam("famo_gamma", 1e-3, "weight decay of the task-weight logits (the paper's gamma)", low=0.0),
    )

    def __init__(self, num_tasks: int, *, weight_lr: float, famo_gamma: float) -> None:
        super().__init__(num_tasks)
        self.logits = torch.zeros(num_tasks, requires_grad=True)  # (T,) ξ; z = softmax(ξ) starts uniform
        self.optimizer = torch.optim.Adam([self.logits], lr=weight_lr, weight_decay=famo_gamma)
        self.previous: Tensor | None = None  # (T,) the losses of the last completed step

    def current_weights(self, losses: Tensor) -> Tensor:
        """(T,) w_i = T·c·z_i / (L_i + ε) at the (T,) losses, with the current logits."""
        z = torch.softmax(self.logits.detach(), dim=0)  # (T,)
        inverse = z / (losses.detach().float() + EPSILON)  # (T,)
        return self.num_tasks * inverse / inverse.sum()

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        place(self.logits, self.optimizer, losses.device)
        if self.previous is not None:  # learn from the last update: its losses before, these after
            self._learn(self.previous.to(losses.device), losses.detach().float())
        weights = self.current_weights(losses)
        weighted_backward(losses, weights, shared)
        return weights

    def after_step(self, losses: Tensor) -> None:
        self.previous = losses.detach().float().clone()

    def _learn(self, before: Tensor, after: Tensor) -> None:
        delta = torch.log(before + EPSILON) - torch.log(after + EPSILON)  # (T,) how far each log-loss fell
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(torch.softmax(self.logits, dim=0), self.logits, grad_outputs=delta)
        self.logits.grad = grad  # z ⊙ (δ − z·δ)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        previous = self.previous if self.previous is not None else torch.zeros(0)
        return {"logits": self.logits.detach().clone(), "optimizer": self.optimizer.state_dict(),
                "previous": previous.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.logits.data = state["logits"].to(self.logits.device, torch.float32).clone()
        self.optimizer.load_state_dict(state["optimizer"])  # casts its state to the logits' device
        previous = state["previous"]
        self.previous = previous.float().clone() if previous.numel() else None
