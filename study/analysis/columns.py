"""The trial columns the report plots and compares: accuracy (higher is better) and cost (lower is better)."""

from __future__ import annotations

OBJECTIVE = "best.val.objective"
ACCURACY = {  # column -> label; all higher-is-better
    "best.val.map": "mAP@0.5:0.95",
    "best.val.map50": "mAP@0.5",
    "best.val.view_accuracy": "view accuracy",
    OBJECTIVE: "objective",
}
COST = {  # column -> label; all lower-is-better
    "time.train_s": "train time (s)",
    "eff.gflops": "GFLOPs / image",
    "eff.params_total": "parameters",
    "eff.peak_mem_mb": "peak memory (MB)",
    "eff.latency_ms_b1": "latency, batch 1 (ms)",
}
