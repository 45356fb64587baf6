"""Optimizers, the learning-rate schedule and the weight EMA used by the engine."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from trainables.config import OptimConfig


def build_optimizer(module: nn.Module, cfg: OptimConfig, lr: float,
                    own_lr: dict[nn.Module, float] | None = None) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW with weight decay on conv/linear weights only.

    Norm-layer weights and all biases get no decay: decaying a BatchNorm scale or a bias towards
    zero only fights the normalisation and shifts activations, it does not regularise capacity.
    ``own_lr`` gives submodules their own base rate (the shared model's view head its ``cls_lr``).
    Every group records its ``base_lr``; the schedule sets ``lr = base_lr * factor``.
    """
    own_lr = own_lr or {}
    owner = {id(p): rate for sub, rate in own_lr.items() for p in sub.parameters()}
    buckets: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(sub, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm))
            buckets.setdefault((owner.get(id(p), lr), not (is_norm or name == "bias")), []).append(p)
    groups = [{"params": params, "base_lr": rate, "lr": rate, "weight_decay": cfg.weight_decay if decays else 0.0}
              for (rate, decays), params in buckets.items()]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))


def lr_factor(step: int, total_steps: int, warmup_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at a (0-based) step: linear warmup, then decay.

    Warmup rises linearly to 1 over ``warmup_steps``; the decay (cosine or linear) then falls from
    1 to ``cfg.final_lr_ratio`` at the last step.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    floor = cfg.final_lr_ratio
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1 - (1 - floor) * progress


class ModelEMA:
    """Exponential moving average of a model's weights and buffers, for evaluation.

    The decay ramps up as ``decay * (1 - exp(-updates / 2000))`` so early, fast-changing weights are
    not frozen in by a decay close to 1 from the first step.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 2000))
        live = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(live[name].detach(), alpha=1 - d)
            else:
                value.copy_(live[name])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
