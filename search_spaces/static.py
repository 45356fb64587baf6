"""A sweep of static task-weight ratios on the shared backbone, tracing the detection/view tradeoff front.

A space is named for the method it searches (``--space static``), hence the same name as trainables/balancing/static.py.
"""

from __future__ import annotations

from typing import Any

import optuna

DESCRIPTION = "shared backbone, static weights: the w_cls/w_det ratio traces the mAP vs view-accuracy front"
FIXED: dict[str, Any] = {"arch": "shared", "balancer.name": "static", "balancer.w_det": 1.0}
# Two objectives (mAP and view accuracy, both maximised): the searcher spreads trials along the front.
DEFAULT_OBJECTIVE = "multi"
MULTI_OBJECTIVE = [("val.map", "max"), ("val.view_accuracy", "max")]


def define(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("balancer.w_cls", 0.02, 50.0, log=True)
    return dict(FIXED)
