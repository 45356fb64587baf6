"""Where to branch: how many backbone units detection and view classification share, from none (the dual
model's costs) to all up to the view head's level (today's shared model), with GradNorm at the split.

``model.shared_stages`` K counts the units from the input (stem, stage2, stage3 = P3, stage4 = P4); the view
head reads P4 (fixed here, so that the range 0..4 is every split of that model). At K > 0 GradNorm balances
on the last shared layer and its alpha and task-weight rate are searched; at K = 0 nothing is shared and the
two branches train as dual does (each loss at weight 1, ``eff.balanced`` = 0), so they are not suggested.
The network's and the view side's learning rates are searched at every split. The report's "where to
branch" figure draws accuracy and cost against K.
"""

from __future__ import annotations

from typing import Any

import optuna

from trainables.config import view_level_units

DESCRIPTION = "where the tasks part: shared backbone units 0..4 (view head at P4), GradNorm alpha at the split, " \
    "learning rates"
FIXED: dict[str, Any] = {"arch": "shared", "balancer.name": "gradnorm", "model.cls_level": "p4"}
DEFAULT_OBJECTIVE = "single"
SEARCHES_SPLIT = True  # ``--methods shared@K/...`` cannot fix what this space searches
VIEW_LEVEL_UNITS = view_level_units(FIXED["model.cls_level"])  # 4: stem, stage2, stage3, stage4


def define(trial: optuna.Trial) -> dict[str, Any]:
    stages = trial.suggest_int("model.shared_stages", 0, VIEW_LEVEL_UNITS)
    if stages > 0:  # with nothing shared there is no layer to balance on
        trial.suggest_float("balancer.alpha", 0.0, 3.0)
        trial.suggest_float("balancer.weight_lr", 1e-3, 3e-2, log=True)
    trial.suggest_float("optim.lr", 2e-3, 1e-2, log=True)
    trial.suggest_float("optim.cls_lr", 3e-4, 3e-3, log=True)
    return dict(FIXED)
