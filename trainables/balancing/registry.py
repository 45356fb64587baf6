"""Balancers by name. A strategy registers itself with ``@register("name")`` in its own file.

A ``balancer.name`` is either a registered name (``gradnorm``) or the import path of a ``Balancer``
subclass, ``package.module:ClassName``: a plugin that is importable where the trial runs (every
node of a cluster), so a strategy can be tried without adding it to this package. Plugins are not
registered: ``available()`` (and with it the ``compare`` space) lists this package's strategies only.

Named like search_spaces/registry.py on purpose: each package's ``registry`` lists its plugins.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.balancing.base import Balancer, Hparam

_REGISTRY: dict[str, type[Balancer]] = {}
_LOADED = False


class UnknownBalancer(ValueError):
    """A ``balancer.name`` that is neither registered nor an importable Balancer class; one line."""


def register(name: str):
    def wrap(cls: type[Balancer]) -> type[Balancer]:
        _check_hparams(name, cls)
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return wrap


def _check_hparams(name: str, cls: type[Balancer]) -> None:
    """A declaration mistake is an error when the strategy's module is imported, not in a trial."""
    names = [h.name for h in cls.hparams]
    if len(set(names)) != len(names):
        raise TypeError(f"balancer {name!r}: hyperparameter names repeat: {names}")
    for h in cls.hparams:
        if h.type not in (int, float) or isinstance(h.default, bool) or not isinstance(h.default, (int, float)):
            raise TypeError(f"balancer {name!r}: {h.key} must be an int or float hyperparameter")
        if h.type is int and not isinstance(h.default, int):
            raise TypeError(f"balancer {name!r}: {h.key} is an int, its default {h.default!r} is not")
        problem = h.problem(h.default)
        if problem:
            raise TypeError(f"balancer {name!r}: its own default fails its range: {problem}")


def _load_all() -> None:
    """Import every module of this package once, so each strategy file registers itself."""
    global _LOADED
    if _LOADED:
        return
    import trainables.balancing as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("base", "registry"):
            importlib.import_module(f"trainables.balancing.{info.name}")
    _LOADED = True


def available() -> list[str]:
    """The registered strategies, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def resolve(name: str) -> type[Balancer]:
    """The strategy class of a registered name or of a ``package.module:ClassName`` import path."""
    from trainables.balancing.base import Balancer

    _load_all()
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name, sep, attr = str(name).partition(":")
    if not sep or not module_name or not attr:
        raise UnknownBalancer(f"balancer.name={name!r} is not one of {available()} "
                              "(or the import path package.module:ClassName of a Balancer subclass)")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or the plugin's own module failing as it loads
        why = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise UnknownBalancer(f"balancer.name={name!r}: cannot import {module_name!r} ({why})") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Balancer)) or getattr(cls, "__abstractmethods__", None):
        raise UnknownBalancer(f"balancer.name={name!r}: {attr!r} in {module_name!r} is not a concrete Balancer "
                              "subclass")
    _check_hparams(name, cls)
    return cls


def hparams_of(name: str) -> tuple[Hparam, ...]:
    """The hyperparameters strategy ``name`` declares, in its order."""
    return tuple(resolve(name).hparams)


def owners() -> dict[str, list[str]]:
    """Hyperparameter name -> the registered strategies that declare it (``weight_lr``: gradnorm, uncertainty)."""
    out: dict[str, list[str]] = {}
    for name in available():
        for h in _REGISTRY[name].hparams:
            out.setdefault(h.name, []).append(name)
    return out


def build(name: str, num_tasks: int, **hparams: Any) -> Balancer:
    """Build a strategy with exactly its declared hyperparameters; those not given take their defaults.
    A value outside its declared range is a ValueError (the one range check: constructors need none)."""
    cls = resolve(name)
    declared = {h.name: h.default for h in cls.hparams}
    unknown = sorted(set(hparams) - set(declared))
    if unknown:
        raise TypeError(f"balancer {name!r} has no hyperparameters {unknown} (it declares {sorted(declared)})")
    values = {**declared, **hparams}
    for h in cls.hparams:
        problem = h.problem(values[h.name])
        if problem is not None:
            raise ValueError(f"{name} balancer: {problem}")
    return cls(num_tasks=num_tasks, **values)
