"""Shared backbone + GradNorm: its alpha and learning rates, weight decay, view-head size, width, batch."""

from __future__ import annotations

from typing import Any

import optuna

DESCRIPTION = "shared backbone + GradNorm: alpha, model and weight learning rates, weight decay, head size, width"
FIXED: dict[str, Any] = {"arch": "shared", "balancer.name": "gradnorm"}
DEFAULT_OBJECTIVE = "single"


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("balancer.alpha", 0.0, 3.0)
    trial.suggest_float("balancer.weight_lr", 1e-3, 1e-1, log=True)
    trial.suggest_float("optim.lr", 3e-4, 1e-2, log=True)
    trial.suggest_float("optim.weight_decay", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("model.cls_hidden", [0, 64, 256])
    trial.suggest_categorical("model.size", ["n", "s"])
    trial.suggest_categorical("data.batch", [8, 16, 32])
    return dict(FIXED)
