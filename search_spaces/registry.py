"""The search spaces by name, and the objectives a study can optimise.

Every space is a module of this package exporting ``define(trial) -> dict`` (Optuna define-by-run:
only ``suggest_*`` calls and conditionals; the returned dict holds the space's fixed settings),
``DESCRIPTION``, ``FIXED`` and ``DEFAULT_OBJECTIVE`` ("single" or "multi"), optionally
``MULTI_OBJECTIVE`` (a list of (metric, mode)).
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


def objectives(name: str, kind: str | None) -> list[tuple[str, str]]:
    """(metric, mode) pairs a study of space ``name`` optimises; ``kind`` None means the space's default."""
    space = load(name)
    kind = kind or space.DEFAULT_OBJECTIVE
    if kind == "single":
        return SINGLE_OBJECTIVE
    return getattr(space, "MULTI_OBJECTIVE", MULTI_OBJECTIVE)


def define_with_base(trial: optuna.Trial, space: str, base: dict[str, Any]) -> dict[str, Any]:
    """The study's define-by-run: the space's suggestions and fixed settings over the study's base config.

    ``base`` is the full flat config of the study's command line; a picklable
    ``functools.partial(define_with_base, space=..., base=...)`` is what the searcher holds.
    """
    constants = load(space).define(trial) or {}
    suggested = set(trial.params)
    return {k: v for k, v in {**base, **constants}.items() if k not in suggested}
