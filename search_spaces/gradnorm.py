"""Shared backbone + GradNorm: its alpha and weight learning rate, the network's and the view head's
learning rates, weight decay and the view head's size.

Model size and batch are fixed (the base config's: n, 16): they change a trial's cost threefold
without telling anything about GradNorm, and a study whose trials cost alike keeps every worker busy
to the end. Search them in a space of their own, or set them with ``--set``.

A space is named for the method it searches (``--space gradnorm``), hence the same name as
trainables/balancing/gradnorm.py.
"""

from __future__ import annotations

from typing import Any

import optuna

DESCRIPTION = "shared backbone + GradNorm: alpha, network / view-head / task-weight learning rates, weight decay, " \
    "head size"
FIXED: dict[str, Any] = {"arch": "shared", "balancer.name": "gradnorm"}
DEFAULT_OBJECTIVE = "single"


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("balancer.alpha", 0.0, 3.0)
    # above ~3e-2 the task weights swing within a short trial's first epochs
    # (measured: docs/benchmarks.md#gradnorm-search-ranges)
    trial.suggest_float("balancer.weight_lr", 1e-3, 3e-2, log=True)
    # AdamW from scratch: below ~2e-3 the detector barely starts within a short trial
    # (measured: docs/benchmarks.md#gradnorm-search-ranges)
    trial.suggest_float("optim.lr", 2e-3, 1e-2, log=True)
    trial.suggest_float("optim.cls_lr", 3e-4, 3e-3, log=True)
    trial.suggest_float("optim.weight_decay", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("model.cls_hidden", [0, 64, 256])
    return dict(FIXED)
