"""Dynamic Weight Average: weight each task by how slowly its loss has been falling."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, Hparam, SharedGraph, weighted_backward
from trainables.balancing.registry import register


@register("dwa")
class DWA(Balancer):
    """Dynamic Weight Average (Liu, Johns, Davison, CVPR 2019, arXiv:1803.10704).

    w_i = T·softmax_i(r_i / temperature), r_i = L̄_i(t−1) / L̄_i(t−2). The paper averages the losses
    over whole epochs; the balancer contract has steps only, so here L̄(t−1) is the mean loss of the
    last ``dwa_window`` steps and L̄(t−2) that of the ``dwa_window`` steps before them (a sliding
    window, updated every step). Until 2·``dwa_window`` steps have been seen the weights are 1, as in
    the paper's first two epochs. A window of about one epoch's steps reproduces the paper's
    timescale; shorter windows react faster and are noisier.

    Why not TorchJD's ``torchjd.scalarization.DWA``: it is the paper's per-epoch form, whose epochs the
    caller must mark (``step()``); the balancer contract has no epoch hook. With ``dwa_window`` equal to
    an epoch's steps the two agree at every epoch's first step and differ between, where this one slides
    (tests/test_balancing_torchjd.py). Published results rest on the sliding window.

    Hyperparameters: ``temperature`` (paper: 2), ``dwa_window`` (steps per averaging window).
    """

    hparams = (
        Hparam("temperature", 2.0, "softmax temperature of the loss rates (paper: 2)", low=0.0, low_open=True,
               search=(0.5, 5.0, False)),
        Hparam("dwa_window", 20, "steps averaged per loss-rate window", type=int, low=1, warmup=True),
    )

    def __init__(self, num_tasks: int, *, temperature: float, dwa_window: int) -> None:
        super().__init__(num_tasks)
        self.temperature = temperature
        self.window = dwa_window
        self.history = torch.zeros(0, num_tasks)  # (≤ 2·window, T) the most recent step losses

    def current_weights(self) -> Tensor:
        """(T,) the weights the next backward will use."""
        if self.history.shape[0] < 2 * self.window:
            return torch.ones(self.num_tasks, device=self.history.device)
        recent = self.history[self.window :].mean(0)  # (T,) L̄(t−1)
        before = self.history[: self.window].mean(0)  # (T,) L̄(t−2)
        ratios = recent / before.clamp_min(1e-12)
        return self.num_tasks * torch.softmax(ratios / self.temperature, dim=0)

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        weights = self.current_weights().to(losses.device)
        weighted_backward(losses, weights, shared)
        return weights

    def after_step(self, losses: Tensor) -> None:
        row = losses.detach().float().reshape(1, -1)  # (1, T)
        self.history = torch.cat([self.history.to(row.device), row])[-2 * self.window :]

    def state_dict(self) -> dict:
        return {"history": self.history.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.history = state["history"].clone()
