"""The trial columns the report plots and compares: the headline metrics of trainables/metrics/names.py,
accuracy (higher is better) and cost (lower is better), as trials.parquet columns with their labels."""

from __future__ import annotations

from trainables.metrics import names


def _headline(direction: str) -> dict[str, str]:
    """trials.parquet column -> label of the headline metrics that are better ``direction``, in registry order."""
    return {names.trial_column(k): names.label(k) for k in names.HEADLINE if names.REGISTRY[k].direction == direction}


OBJECTIVE = names.trial_column(names.OBJECTIVE)
ACCURACY = _headline("max")  # best.val.map50, best.val.map, ..., best.val.objective
COST = _headline("min")  # time.train_s, eff.gflops, ...
TASK_METRIC = {task: names.trial_column(key) for task, key in names.TASK_SCORE.items()}  # Δm's task scores
TEST_METRICS = {m: names.label(f"val.{m}") for m in names.TEST_SHOWN}  # test.<metric> -> label; all higher-is-better
