"""Dual independent backbones: a detector and a classifier that share nothing, each with its own optimizer.

A space is named for the method it searches (``--space dual``), hence the same name as trainables/models/dual.py.
"""

from __future__ import annotations

from typing import Any

import optuna

DESCRIPTION = "dual backbones: detector and classifier learning rates, classifier backbone and head size, widths"
FIXED: dict[str, Any] = {"arch": "dual", "balancer.name": "equal"}
DEFAULT_OBJECTIVE = "single"


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("optim.lr", 3e-4, 1e-2, log=True)
    trial.suggest_float("optim.cls_lr", 3e-4, 1e-2, log=True)
    trial.suggest_float("optim.weight_decay", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("model.size", ["n", "s"])
    backbone = trial.suggest_categorical("model.cls_backbone", ["yolo", "resnet18", "mobilenet_v3_small"])
    if backbone == "yolo":
        trial.suggest_categorical("model.cls_width_multiple", [0.125, 0.25, 0.5])
    trial.suggest_categorical("model.cls_hidden", [0, 64, 256])
    return dict(FIXED)
