"""GradNorm: learn the task weights so that the tasks' gradient norms on W follow their training rates."""

from __future__ import annotations

import torch
from torch import Tensor

from trainables.balancing.base import Balancer, Hparam, SharedGraph, weighted_backward
from trainables.balancing.grads import combine, task_feature_grads
from trainables.balancing.learned import place
from trainables.balancing.registry import register

WEIGHT_FLOOR = 1e-3  # weights are clamped here before renormalising, so they stay positive


@register("gradnorm")
class GradNorm(Balancer):
    """GradNorm (Chen, Badrinarayanan, Lee, Rabinovich, ICML 2018, arXiv:1711.02257).

    Every step t, with W the last shared layer (``shared.params``) and w(t) the current weights:

    - the network's gradient is that of Σ_i w_i(t) L_i, the weights taken as constants;
    - G_i = ‖∇_W w_i L_i‖ = w_i ‖∇_W L_i‖, read from task i's feature gradient through W only;
    - r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0)), the relative inverse training rate;
    - L_grad = Σ_i |G_i − mean(G)·r_i^α| with the target mean(G)·r_i^α detached (as in the paper);
      its gradient with respect to the weights only, sign(G_i − target_i)·‖∇_W L_i‖, is taken with
      ``torch.autograd.grad`` on a graph that holds nothing but the T weights, so it can never reach
      the network's gradients, and costs no second backward pass;
    - after the optimizer step (:meth:`after_step`) the weights take one Adam step (lr ``weight_lr``)
      on that gradient, are clamped to ``WEIGHT_FLOOR`` and renormalised to Σ_i w_i = T.

    L_i(0) is the mean loss of the first ``warmup_steps`` steps (one batch is too noisy); during
    those steps the weights stay at 1 and are not updated. Adam rather than SGD: its step size is
    ``weight_lr`` whatever the scale of ‖∇_W L_i‖, which differs by orders of magnitude between
    models and layers, so one ``weight_lr`` range fits every architecture in the study.

    Without shared parameters W (``shared.active`` False or no params) there is no gradient norm to
    balance: the weights stay where they are and the backward is the plain weighted sum.

    Hyperparameters: ``alpha`` (restoring-force strength, paper's best 0.12–3), ``weight_lr``,
    ``warmup_steps``. For logging, ``last_grad_norms`` (G_i), ``last_ratios`` (r_i) and
    ``last_grad_loss`` (L_grad) hold the values of the last step (None before GradNorm starts).
    """

    hparams = (
        Hparam("alpha", 1.5, "restoring-force strength (paper's best 0.12-3)", low=0.0, high=10.0,
               search=(0.0, 3.0, False)),
        # searched from 1e-3 until the searched verdict (docs/results/searched-5x8-160) chose 1.2e-3 in one fold
        Hparam("weight_lr", 0.025, "Adam learning rate of the task weights", low=0.0, low_open=True,
               search=(3e-4, 1e-1, True)),
        Hparam("warmup_steps", 20, "steps averaged for the initial losses L_i(0)", type=int, low=1,
               warmup=True),
    )

    def __init__(self, num_tasks: int, *, alpha: float, weight_lr: float, warmup_steps: int) -> None:
        super().__init__(num_tasks)
        self.alpha = alpha
        self.warmup_steps = warmup_steps
        self.weights = torch.ones(num_tasks, requires_grad=True)  # (T,) the learnable w_i
        self.optimizer = torch.optim.Adam([self.weights], lr=weight_lr)
        self.step = 0  # completed steps (after_step calls)
        self.initial_sum = torch.zeros(num_tasks)  # (T,) Σ of the warm-up losses
        self.pending: Tensor | None = None  # (T,) ∂L_grad/∂w of the last backward, applied in after_step
        self.last_grad_norms: Tensor | None = None
        self.last_ratios: Tensor | None = None
        self.last_grad_loss: Tensor | None = None

    @property
    def started(self) -> bool:
        return self.step >= self.warmup_steps

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        self._place(losses.device)
        weights = self.weights.detach().clone()  # (T,) w(t), constants for the network
        self.pending = None
        if not (self.started and shared.active and shared.params):
            weighted_backward(losses, weights, shared)
            return weights

        feature_grads = task_feature_grads(losses, shared, weights)  # T × d(w_i L_i)/d features
        grad_norms = torch.stack([shared.param_grad_norm(g).to(weights) for g in feature_grads])  # (T,) G_i
        shared.trunk_backward(combine(feature_grads, torch.ones_like(weights)))  # ∇ of Σ w_i L_i

        unit_norms = grad_norms / weights  # (T,) ‖∇_W L_i‖; weights >= WEIGHT_FLOOR
        loss_ratio = losses.detach().float() / (self.initial_sum / self.warmup_steps).clamp_min(1e-12)
        ratios = loss_ratio / loss_ratio.mean().clamp_min(1e-12)  # (T,) r_i
        with torch.enable_grad():
            g = self.weights * unit_norms  # (T,) G_i as a function of the weights only
            target = (g.mean() * ratios.pow(self.alpha)).detach()
            grad_loss = (g - target).abs().sum()
            (self.pending,) = torch.autograd.grad(grad_loss, self.weights)
        self.last_grad_norms, self.last_ratios = grad_norms.detach(), ratios
        self.last_grad_loss = grad_loss.detach()
        return weights

    def after_step(self, losses: Tensor) -> None:
        self._place(losses.device)
        if not self.started:
            self.initial_sum += losses.detach().float()
        elif self.pending is not None:
            self.weights.grad = torch.nan_to_num(self.pending, nan=0.0, posinf=0.0, neginf=0.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                self.weights.clamp_(min=WEIGHT_FLOOR)
                self.weights.mul_(self.num_tasks / self.weights.sum())
        self.pending = None
        self.step += 1

    def _place(self, device: torch.device) -> None:
        place(self.weights, self.optimizer, device)
        self.initial_sum = self.initial_sum.to(device)

    def state_dict(self) -> dict:
        return {
            "weights": self.weights.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "initial_sum": self.initial_sum.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        device = self.weights.device
        self.weights.data = state["weights"].to(device=device, dtype=self.weights.dtype).clone()
        self.optimizer.load_state_dict(state["optimizer"])  # casts its state to the weights' device
        self.step = int(state["step"])
        self.initial_sum = state["initial_sum"].to(device).clone()
        self.pending = None
