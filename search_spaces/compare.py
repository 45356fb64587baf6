"""The fair comparison: every method (architecture x balancer) with the same number of trials.

The study runs one independent search per method (study/tuning/searchers.py): each method has its own
sampler and history, the same number of trials (``--samples`` is the total, a multiple of the
number of methods) and is scored by its own objective. ``define(trial, method)`` is that method's
sub-space: the learning rate(s) and the method's own hyperparameters.

The methods are the shared backbone with every registered balancer (trainables/balancing/, ``equal``
first), then dual and the two single-task baselines; a balancer's searched hyperparameters and
their ranges are those it declares with a ``search`` range (``Balancer.hparams``). A new balancer
file is a new method here, with nothing to add.
"""

from __future__ import annotations

from typing import Any

import optuna

DESCRIPTION = "architecture x balancer (shared + every registered balancer, dual, single-task), equal trials per method"
FIXED: dict[str, Any] = {}
DEFAULT_OBJECTIVE = "single"
BASELINES = ("dual", "det_only", "cls_only")  # the architectures without shared weights to balance


def methods() -> list[dict[str, Any]]:
    """``shared`` with every registered balancer (``equal`` first, then by name), then the baselines."""
    from trainables.balancing.registry import available

    balancers = ["equal", *(name for name in available() if name != "equal")]
    return ([{"arch": "shared", "balancer.name": name} for name in balancers]
            + [{"arch": arch, "balancer.name": "equal"} for arch in BASELINES])


def define(trial: optuna.Trial, method: dict[str, Any]) -> dict[str, Any]:
    from trainables.balancing.registry import hparams_of

    # from 1e-4: the searched verdict (docs/results/searched-5x8-160, which searched 3e-4-1e-2) chose values
    # within 5% of that low end in 3 of its 30 choices of a learning rate (README: "Does tuning change the answer?")
    trial.suggest_float("optim.lr", 1e-4, 1e-2, log=True)
    if method["arch"] != "det_only":  # the view head's own rate (dual: the whole classifier network's)
        trial.suggest_float("optim.cls_lr", 1e-4, 1e-2, log=True)
    for h in hparams_of(method["balancer.name"]):  # the balancer's own searched hyperparameters
        if h.search is not None:
            low, high, log = h.search
            if h.type is int:
                trial.suggest_int(h.key, int(low), int(high), log=log)
            else:
                trial.suggest_float(h.key, low, high, log=log)
    return dict(method)
