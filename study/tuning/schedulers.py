"""ASHA per method: early stopping that ranks a trial only against trials of its own method.

A multi-method space (``compare``) runs one independent search per method, each scored by its own
objective (mAP for det_only, view accuracy for cls_only, their mean for multi-task methods): one
ASHA over all of them would stop a det_only trial for having a lower "objective" than a cls_only
one. ``PerMethodASHA`` keeps one ``ASHAScheduler`` (its own rungs and cut-offs) per method and routes
every trial event to its method's scheduler; which trial runs next is plain FIFO, as ASHA's own.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from search_spaces.registry import method_label


def trial_method(config: dict[str, Any]) -> str:
    """The method label of a trial's flat config (``shared/gradnorm``, ``shared@2/gradnorm``, ``dual``, ...)."""
    return method_label(config)


class PerMethodASHA(FIFOScheduler):
    """One ASHA per method. ``asha_kwargs`` are ``ASHAScheduler``'s (time_attr, metric, mode, max_t, ...)."""

    def __init__(self, methods: list[str], **asha_kwargs: Any) -> None:
        super().__init__()
        self.kwargs = asha_kwargs
        self.by_method: dict[str, ASHAScheduler] = {m: ASHAScheduler(**asha_kwargs) for m in methods}
        self._metric = asha_kwargs.get("metric")

    def _for(self, trial: Any) -> ASHAScheduler:
        method = trial_method(trial.config)
        if method not in self.by_method:  # a method outside the declared list still gets its own ranking
            self.by_method[method] = ASHAScheduler(**self.kwargs)
        return self.by_method[method]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return all(s.set_search_properties(metric, mode, **spec) for s in self.by_method.values())

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._for(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._for(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._for(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._for(trial).on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{m}: {s.debug_string()}" for m, s in self.by_method.items())
