"""One training step of any architecture and balancer: what ``engine.fit`` and the benchmarks share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trainables.balancing.base import Balancer, SharedGraph
from trainables.balancing.registry import build as build_balancer
from trainables.config import TrialConfig
from trainables.losses import task_loss_terms
from trainables.models.build import build_model
from trainables.models.transfer import load_initial_weights
from trainables.optim import ModelEMA, build_optimizer
from trainables.precision import Numerics


def tasks_of(arch: str) -> list[str]:
    """The task losses an architecture trains, in the order of the (T,) loss vector."""
    return {"shared": ["det", "view"], "dual": ["det", "view"], "det_only": ["det"], "cls_only": ["view"]}[arch]


@dataclass
class StepOutput:
    parts: dict[str, Tensor]  # named loss parts (box, obj, cls, view), detached scalars
    losses: Tensor  # (T,) task losses, detached
    weights: Tensor  # (T,) task weights the balancer used
    finite: bool  # False: a NaN/inf loss; nothing was updated


class Learner:
    """A model with its optimizers (one per network: dual gets two), balancer and optional EMA."""

    def __init__(self, cfg: TrialConfig, num_classes: int, num_views: int, device: torch.device,
                 view_class_weights: Tensor | None = None) -> None:
        self.cfg = cfg
        self.device = device
        model = build_model(cfg, num_classes, num_views)
        # before the EMA copies the model and the optimizers see it: both must start from these weights
        self.transfer = load_initial_weights(model, cfg.model.weights) if cfg.model.weights else None
        self.numerics = Numerics.resolve(cfg.train.precision, cfg.train.memory_format, device)
        self.model = self.numerics.module(model.to(device))  # before the EMA copy: it inherits the layout
        # one rule: what only the view task trains learns at optim.cls_lr, the rest at optim.lr: the view head, the
        # view branch's own units after a split, dual's whole classifier network, cls_only's whole network
        view_only = getattr(self.model, "view_modules", list)()
        own_lr = dict.fromkeys(view_only, cfg.optim.cls_lr)
        self.optimizers = {
            name: build_optimizer(net, cfg.optim, self.base_lr(name), own_lr)
            for name, net in self.model.networks().items()
        }
        self.tasks = tasks_of(cfg.arch)
        # a balancer weighs the task losses on a shared layer; a two-task model that shares nothing
        # (model.shared_stages=0) trains as dual does, each task's loss at weight 1 (``balanced`` records it)
        self.balanced = bool(self.model.shared_parameters())
        name, hparams = (cfg.balancer.name, cfg.balancer.hparams) if self.balanced else ("equal", {})
        self.balancer: Balancer = build_balancer(name, len(self.tasks), **hparams)
        self.ema = ModelEMA(self.model, cfg.optim.ema_decay) if cfg.optim.ema else None
        self.view_class_weights = view_class_weights

    def base_lr(self, network: str) -> float:
        """A network's base rate: ``cls_lr`` when only the view task trains it (dual's "cls", cls_only's model)."""
        view_only = network == "cls" or self.cfg.arch == "cls_only"
        return self.cfg.optim.cls_lr if view_only else self.cfg.optim.lr

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def step(self, images: Tensor, targets: Tensor, views: Tensor, lr_scale: float = 1.0) -> StepOutput:
        """Forward, balanced backward, clip, optimizer step(s).

        images (B, 3, S, S) float in [0, 1]; targets (K, 6) [batch_index, class, x1, y1, x2, y2] pixels;
        views (B,) int64. The learning rate of every network is its base rate times ``lr_scale``.
        """
        cfg, model = self.cfg, self.model
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_scale
            opt.zero_grad(set_to_none=True)
        images = self.numerics.images(images)
        with self.numerics.autocast():
            # the heads run on detached copies of the trunk's features, so a balancer can read each
            # task's feature gradient and send one combined gradient through the trunk
            shared = SharedGraph.split(model.trunk(images), model.shared_parameters())
            det_out, cls_logits = model.heads(shared.detached)
        # the losses outside autocast, on float32 outputs (losses.py casts too): task scales and the
        # balancers' inputs must not carry bf16's 3 significant digits
        parts, terms = task_loss_terms(det_out, cls_logits, targets, views, model, cfg.loss,
                                       view_class_weights=self.view_class_weights)
        shared.terms = tuple(terms)
        losses = torch.stack(terms).float()
        detached_parts = {k: v.detach() for k, v in parts.items()}
        if not torch.isfinite(losses).all():
            return StepOutput(detached_parts, losses.detach(), torch.full_like(losses, math.nan), finite=False)
        weights = self.balancer.backward(losses, shared)
        if cfg.optim.grad_clip > 0:  # per network: one network's spike must not shrink the other's step
            for net in model.networks().values():
                nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
        for opt in self.optimizers.values():
            opt.step()
        self.balancer.after_step(losses.detach())
        if self.ema is not None:
            self.ema.update(model)
        return StepOutput(detached_parts, losses.detach(), weights.detach(), finite=True)

    # -- checkpoint state ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "balancer": self.balancer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.balancer.load_state_dict(state["balancer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
