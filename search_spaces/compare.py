"""The fair comparison: every method (architecture x balancer) with the same number of trials.

The study runs one independent search per method (study/searchers.py): each method has its own
sampler and history, the same number of trials (``--samples`` is the total, a multiple of
``len(METHODS)``) and is scored by its own objective. ``define(trial, method)`` is that method's
sub-space: the learning rate(s) and the method's own hyperparameters.
"""

from __future__ import annotations

from typing import Any

import optuna

DESCRIPTION = "architecture x balancer (shared+equal/static/gradnorm/uncertainty/dwa/pcgrad/cagrad, dual, " \
    "single-task), equal trials per method"
METHODS: list[dict[str, Any]] = [
    {"arch": "shared", "balancer.name": "equal"},
    {"arch": "shared", "balancer.name": "static"},
    {"arch": "shared", "balancer.name": "gradnorm"},
    {"arch": "shared", "balancer.name": "uncertainty"},
    {"arch": "shared", "balancer.name": "dwa"},
    {"arch": "shared", "balancer.name": "pcgrad"},
    {"arch": "shared", "balancer.name": "cagrad"},
    {"arch": "dual", "balancer.name": "equal"},
    {"arch": "det_only", "balancer.name": "equal"},
    {"arch": "cls_only", "balancer.name": "equal"},
]
FIXED: dict[str, Any] = {}
DEFAULT_OBJECTIVE = "single"


def define(trial: optuna.Trial, method: dict[str, Any]) -> dict[str, Any]:
    trial.suggest_float("optim.lr", 3e-4, 1e-2, log=True)
    if method["arch"] != "det_only":  # the view head's own rate (dual: the whole classifier network's)
        trial.suggest_float("optim.cls_lr", 3e-4, 1e-2, log=True)
    balancer = method["balancer.name"]
    if balancer == "static":
        trial.suggest_float("balancer.w_cls", 0.05, 20.0, log=True)
    elif balancer == "gradnorm":
        trial.suggest_float("balancer.alpha", 0.0, 3.0)
        trial.suggest_float("balancer.weight_lr", 1e-3, 1e-1, log=True)
    elif balancer == "uncertainty":
        trial.suggest_float("balancer.weight_lr", 1e-3, 1e-1, log=True)
    elif balancer == "dwa":
        trial.suggest_float("balancer.temperature", 0.5, 5.0)
    elif balancer == "cagrad":
        trial.suggest_float("balancer.cagrad_c", 0.1, 0.9)
    return dict(method)
