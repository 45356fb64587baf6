"""The search spaces by name, and the objectives a study can optimise.

Every module of this package but this one is a space, found by its file: ``search_spaces/NAME.py`` is
``--space NAME`` (a module named ``_like_this`` is a helper, not a space). A space exports
``define(trial) -> dict`` (Optuna define-by-run: only ``suggest_*`` calls and conditionals; the
returned dict holds the space's fixed settings), ``DESCRIPTION``, ``FIXED`` and ``DEFAULT_OBJECTIVE``
("single" or "multi"), optionally ``MULTI_OBJECTIVE`` (a list of (metric, mode)).

A space that holds several methods (``compare``) also exports ``methods()`` (a list of
``{"arch": ..., "balancer.name": ...}``; a function, so that it can follow the balancer registry)
and its ``define(trial, method)`` takes the method the trial belongs to: the study runs one
independent search per method (study/tuning/searchers.py), so a method never comes from the trial's
number in a shared sampler.

A balancer's hyperparameters exist only under that balancer (trainables/config.py): the base
config's ``balancer.<key>`` values apply to the methods whose balancer declares the key, and a
method's other hyperparameters take their defaults (``define_with_base``, ``base_config``).

Named like trainables/balancing/registry.py on purpose: each package's ``registry`` lists its plugins.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import optuna

from trainables.config import ConfigError, ModelConfig, TrialConfig, fit_balancer, view_level_units


def discover() -> tuple[str, ...]:
    """The names of this package's spaces, sorted: its modules but the registry and ``_helpers`` (a new file is
    a new space with nothing to add here, as a balancer file is a balancer: trainables/balancing/registry.py)."""
    import search_spaces as package

    return tuple(sorted(info.name for info in pkgutil.iter_modules(package.__path__)
                        if info.name != "registry" and not info.name.startswith("_")))


SPACES = discover()  # gradnorm, dual, compare, static, branch and any new file
# The default single objective: 0.5 * val mAP@0.5:0.95 + 0.5 * val view accuracy (trainables/engine.py)
SINGLE_OBJECTIVE = [("val.objective", "max")]
# The default two objectives: quality against training cost
MULTI_OBJECTIVE = [("val.objective", "max"), ("time.train_s", "min")]


def load(name: str) -> ModuleType:
    if name not in SPACES:
        raise KeyError(name)
    return importlib.import_module(f"search_spaces.{name}")


def methods(name: str) -> list[dict[str, Any]]:
    """The methods a space searches: its ``methods()``, or the single method its ``FIXED`` names."""
    space = load(name)
    if hasattr(space, "methods"):
        return [dict(m) for m in space.methods()]
    return [{"arch": space.FIXED["arch"], "balancer.name": space.FIXED["balancer.name"]}]


SPLIT_KEY = "model.shared_stages"


def method_name(arch: str, balancer: str, shared_stages: int = -1) -> str:
    """A method's label: ``shared/<balancer>`` on the shared backbone, ``shared@K/<balancer>`` when it
    shares an explicit K backbone units (``model.shared_stages`` = K >= 0; the default, -1, shares every
    unit up to the view head's level), the architecture otherwise (dual and the single-task baselines
    train without a balancer). The Optuna study's name too."""
    if arch != "shared":
        return str(arch)
    return f"shared@{int(shared_stages)}/{balancer}" if int(shared_stages) >= 0 else f"shared/{balancer}"


def method_label(config: Mapping[str, Any]) -> str:
    """The label of a method dict, a flat config or a trials.parquet row (``arch``, ``balancer.name`` and,
    when present and not empty, ``model.shared_stages``). One model, one label: a split that shares every unit
    up to the view head's level (``model.cls_level``, p4 when absent) is the shared model itself, so
    ``shared@4/gradnorm`` is labelled ``shared/gradnorm`` (a verdict never compares a method with itself); a
    split that shares nothing (K = 0) trains each loss at weight 1 whatever ``balancer.name`` says (no shared
    weights to balance), so it is labelled ``shared@0/equal``: the label names what runs."""
    stages = config.get(SPLIT_KEY, -1)
    stages = -1 if stages is None or (isinstance(stages, float) and math.isnan(stages)) else int(stages)
    level = config.get("model.cls_level")
    if stages >= 0 and stages == view_level_units(level if isinstance(level, str) else ModelConfig.cls_level):
        stages = -1
    balancer = "equal" if stages == 0 else str(config.get("balancer.name", "equal"))
    return method_name(str(config.get("arch")), balancer, stages)


def parse_method(text: str) -> dict[str, Any]:
    """A method as a user types it -> its method dict: ``shared@2/gradnorm`` -> ``{"arch": "shared",
    "balancer.name": "gradnorm", "model.shared_stages": 2}``; ``shared/equal``; ``dual`` (or ``dual/equal``).
    Raises ConfigError (one line) for a malformed split."""
    arch, _, balancer = text.partition("/")
    arch, at, stages = arch.partition("@")
    method: dict[str, Any] = {"arch": arch, "balancer.name": balancer or "equal"}
    if at:
        if arch != "shared" or not stages.isdigit():
            raise ConfigError(f"method {text!r}: a split is written shared@K/<balancer> with K = 0, 1, ... shared "
                              "backbone units")
        method[SPLIT_KEY] = int(stages)
    return method


def select_methods(space: str, labels: list[str], config: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The methods ``--methods`` names, in its order (each once): the space's own (by label), or a shared
    method of the space at a split, ``shared@K/<balancer>`` (its ``shared/<balancer>`` with
    ``model.shared_stages`` = K). ``config``: the study's command-line keys, to check K against the
    model (``model.cls_level``). Raises ConfigError (one line) for anything else."""
    every = methods(space)
    by_name = {method_label(m): m for m in every}
    chosen = []
    for label in dict.fromkeys(labels):
        if label in by_name:
            chosen.append(by_name[label])
            continue
        method = parse_method(label) if "@" in label else None
        base = by_name.get(method_name(method["arch"], method["balancer.name"])) if method else None
        if base is None:
            raise ConfigError(f"--methods {label}: not a method of space {space!r} (it has {', '.join(by_name)}"
                              f"; a shared one also at a split, shared@K/<balancer>)")
        if SPLIT_KEY in base or getattr(load(space), "SEARCHES_SPLIT", False):
            raise ConfigError(f"--methods {label}: space {space!r} sets model.shared_stages itself")
        method = {**base, SPLIT_KEY: method[SPLIT_KEY]}
        model = {k: v for k, v in (config or {}).items() if k.startswith("model.")}
        TrialConfig.from_partial({**model, "arch": method["arch"], SPLIT_KEY: method[SPLIT_KEY]})
        if method_label({**model, **method}) == method_label(base):  # every unit shared: the shared method itself
            method = base
        chosen.append(method)
    unique = {method_label({**{k: v for k, v in (config or {}).items() if k.startswith("model.")}, **m}): m
              for m in chosen}  # shared/gradnorm and shared@4/gradnorm named together: one method, run once
    return list(unique.values())


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
    if hasattr(module, "methods"):
        if method is None:
            raise ValueError(f"space {space!r} holds several methods: define_with_base needs the trial's method")
        constants = module.define(trial, method) or {}
    else:
        constants = module.define(trial) or {}
        if method is not None and SPLIT_KEY in method:  # a shared method at a split (``select_methods``)
            constants = {**constants, SPLIT_KEY: method[SPLIT_KEY]}
    suggested = set(trial.params)
    # the method's balancer: the base's values of its keys, defaults for the rest, no other balancer's keys
    merged = fit_balancer({**base, **constants}) if base else {**base, **constants}
    return {k: v for k, v in merged.items() if k not in suggested}


def base_config(space: str, config: dict[str, Any], methods_: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A study's flat base config: ``config`` (the command line's keys) over the defaults.

    ``balancer.name`` is the space's to set: given, it must be the balancer of every method. A
    ``balancer.<key>`` must belong to the balancer of at least one method (``methods_``, default all
    of the space's) and is checked there; it applies to those methods only. With one balancer the
    base is that balancer's full config; with several it is the ``equal`` config plus those keys
    (``TrialConfig.from_flat`` ignores other balancers' keys). Raises ConfigError (one line).
    """
    names = list(dict.fromkeys(m["balancer.name"] for m in (methods_ or methods(space))))
    given = config.get("balancer.name")
    if given is not None and [given] != names:
        raise ConfigError(f"config: balancer.name={given!r}: space {space!r} sets the balancer itself "
                          f"({', '.join(names)}); leave balancer.name out")
    if len(names) == 1:
        return TrialConfig.from_partial({**config, "balancer.name": names[0]}).to_flat()
    keys = {k: v for k, v in config.items() if k.startswith("balancer.") and k != "balancer.name"}
    base = TrialConfig.from_partial({k: v for k, v in config.items() if k not in keys}).to_flat()
    for key, value in keys.items():
        owners = [n for n in names if key in TrialConfig.flat_keys(n)]
        if not owners:
            valid = sorted({k for n in names for k in TrialConfig.flat_keys(n) if k.startswith("balancer.")} - {
                "balancer.name"})
            raise ConfigError(f"config: unknown keys {[key]}: no balancer of space {space!r} has it (they have "
                              f"{valid})")
        for owner in owners:  # checked (and typed) by each balancer that declares it
            base[key] = TrialConfig.from_partial({"balancer.name": owner, key: value}).to_flat()[key]
    return base
