"""The search spaces by name, and the objectives a study can optimise.

Every space is a module of this package exporting ``define(trial) -> dict`` (Optuna define-by-run:
only ``suggest_*`` calls and conditionals; the returned dict holds the space's fixed settings),
``DESCRIPTION``, ``FIXED`` and ``DEFAULT_OBJECTIVE`` ("single" or "multi"), optionally
``MULTI_OBJECTIVE`` (a list of (metric, mode)).

A space that holds several methods (``compare``) also exports ``METHODS`` (a list of
``{"arch": ..., "balancer.name": ...}``) and its ``define(trial, method)`` takes the method the
trial belongs to: the study runs one independent search per method (study/searchers.py), so a
method never comes from the trial's number in a shared sampler.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import optuna

SPACES = ("gradnorm", "dual", "compare", "static")
# The default single objective: 0.5 * val mAP@0.5:0.95 + 0.5 * val view accuracy (trainables/engine.py)
SINGLE_OBJECTIVE = [("val.objective", "max")]
# The default two objectives: quality against training cost
MULTI_OBJECTIVE = [("val.objective", "max"), ("time.train_s", "min")]


def load(name: str) -> ModuleType:
    if name not in SPACES:
        raise KeyError(name)
    return importlib.import_module(f"search_spaces.{name}")


def methods(name: str) -> list[dict[str, Any]]:
    """The methods a space searches: its ``METHODS``, or the single method its ``FIXED`` names."""
    space = load(name)
    if hasattr(space, "METHODS"):
        return [dict(m) for m in space.METHODS]
    return [{"arch": space.FIXED["arch"], "balancer.name": space.FIXED["balancer.name"]}]


def method_name(arch: str, balancer: str) -> str:
    """A method's label: ``shared/<balancer>`` on the shared backbone, the architecture otherwise
    (dual and the single-task baselines train without a balancer). The Optuna study's name too."""
    return f"shared/{balancer}" if arch == "shared" else str(arch)


def objectives(name: str, kind: str | None) -> list[tuple[str, str]]:
    """(metric, mode) pairs a study of space ``name`` optimises; ``kind`` None means the space's default."""
    space = load(name)
    kind = kind or space.DEFAULT_OBJECTIVE
    if kind == "single":
        return SINGLE_OBJECTIVE
    return getattr(space, "MULTI_OBJECTIVE", MULTI_OBJECTIVE)


def define_with_base(trial: optuna.Trial, space: str, base: dict[str, Any],
                     method: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study's define-by-run: the space's suggestions and fixed settings over the study's base config.

    ``base`` is the full flat config of the study's command line; ``method`` is the method the trial
    belongs to (required by a multi-method space, ignored otherwise). A picklable
    ``functools.partial(define_with_base, space=..., base=..., method=...)`` is what the searcher holds.
    """
    module = load(space)
    if hasattr(module, "METHODS"):
        if method is None:
            raise ValueError(f"space {space!r} holds several methods: define_with_base needs the trial's method")
        constants = module.define(trial, method) or {}
    else:
        constants = module.define(trial) or {}
    suggested = set(trial.params)
    return {k: v for k, v in {**base, **constants}.items() if k not in suggested}
