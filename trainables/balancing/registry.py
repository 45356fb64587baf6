"""Balancers by name. A strategy registers itself with ``@register("name")`` in its own file."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.balancing.base import Balancer

_REGISTRY: dict[str, type[Balancer]] = {}
_LOADED = False


def register(name: str):
    def wrap(cls: type[Balancer]) -> type[Balancer]:
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return wrap


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
    _load_all()
    return sorted(_REGISTRY)


def build(name: str, num_tasks: int, **hparams: Any) -> Balancer:
    """Build a strategy; ``hparams`` may hold every balancer key, each class takes what it names."""
    _load_all()
    cls = _REGISTRY[name]
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in hparams.items() if k in accepted and k != "num_tasks"}
    return cls(num_tasks=num_tasks, **kwargs)
