"""A hand-made study on disk, written with the real Parquet writers (study/store/trials.py), for the analysis tests.

Every number is chosen so the headline statistics can be checked by hand (see test_analysis_headline.py):
GradNorm's best configuration g2 was repeated with three seeds (mAP 0.30/0.32/0.34, view 0.80/0.82/0.84,
train 10/11/12 s); dual's best d1 has mAP 0.36, view 0.80, 20 s; the baselines score mAP 0.40 (det_only)
and view 0.80 (cls_only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from study.store.trials import epochs_table, trial_row, trials_table, write_atomic
from trainables.config import TrialConfig

# trial_id, arch, balancer, final mAP, final view accuracy, train seconds, status, repeat_of, config overrides
TRIALS: list[tuple[str, str, str, float, float, float, str, str, dict[str, Any]]] = [
    ("g1", "shared", "gradnorm", 0.28, 0.72, 9.0, "finished", "", {"balancer.alpha": 0.5, "optim.lr": 0.01}),
    ("g2", "shared", "gradnorm", 0.36, 0.84, 10.0, "finished", "", {"balancer.alpha": 1.5, "optim.lr": 0.02}),
    ("g3", "shared", "gradnorm", 0.20, 0.60, 8.0, "finished", "", {"balancer.alpha": 2.5, "optim.lr": 0.005}),
    ("g4", "shared", "gradnorm", 0.10, 0.50, 3.0, "stopped", "", {"balancer.alpha": 2.9, "optim.lr": 0.04}),
    ("r1", "shared", "gradnorm", 0.30, 0.80, 10.0, "finished", "g2", {"balancer.alpha": 1.5, "optim.lr": 0.02,
                                                                      "train.seed": 1000}),
    ("r2", "shared", "gradnorm", 0.32, 0.82, 11.0, "finished", "g2", {"balancer.alpha": 1.5, "optim.lr": 0.02,
                                                                      "train.seed": 1001}),
    ("r3", "shared", "gradnorm", 0.34, 0.84, 12.0, "finished", "g2", {"balancer.alpha": 1.5, "optim.lr": 0.02,
                                                                      "train.seed": 1002}),
    ("d1", "dual", "equal", 0.36, 0.80, 20.0, "finished", "", {"optim.lr": 0.01, "optim.cls_lr": 0.02}),
    ("d2", "dual", "equal", 0.30, 0.74, 22.0, "finished", "", {"optim.lr": 0.03, "optim.cls_lr": 0.004}),
    ("e1", "shared", "equal", 0.25, 0.65, 9.5, "finished", "", {"optim.lr": 0.015}),
    ("b1", "det_only", "equal", 0.40, math.nan, 7.0, "finished", "", {"optim.lr": 0.01}),
    ("c1", "cls_only", "equal", math.nan, 0.80, 4.0, "finished", "", {"optim.lr": 0.01}),
    ("v1", "shared", "gradnorm", math.nan, math.nan, 1.0, "diverged", "", {"balancer.alpha": 3.0, "optim.lr": 0.05}),
    ("x1", "shared", "gradnorm", math.nan, math.nan, 0.0, "error", "", {"balancer.alpha": 0.1, "optim.lr": 0.001}),
]
EPOCHS = 3
GFLOPS = {"shared": 1.0, "dual": 1.8, "det_only": 0.9, "cls_only": 0.4}
PARAMS = {"shared": 1.8e6, "dual": 3.5e6, "det_only": 1.7e6, "cls_only": 1.0e6}


def _objective(arch: str, m: float, v: float) -> float:
    return {"det_only": m, "cls_only": v}.get(arch, (m + v) / 2)


def epoch_rows(tid: str, arch: str, balancer: str, m: float, v: float, train_s: float, status: str) -> list[dict]:
    """Metrics rising linearly to their final values at the last epoch (the best epoch)."""
    if status in ("error",):
        return []
    if status == "diverged":
        return [{"epoch": 1, "step": 2, "status": "diverged", "reason": "non-finite loss at epoch 1, step 2"}]
    n = 1 if status == "stopped" else EPOCHS
    rows = []
    for e in range(1, n + 1):
        f = e / EPOCHS
        det, view = m * f, v * f
        gn = balancer == "gradnorm"
        rows.append({
            "epoch": e, "step": 4 * e, "status": "finished" if (e == n and status == "finished") else "running",
            "lr": 0.01, "loss.box": 0.1 / e, "loss.obj": 0.05 / e, "loss.cls": 0.02 / e,
            "loss.det": 0.17 / e if arch != "cls_only" else math.nan, "loss.view": 1.2 / e if arch != "det_only"
            else math.nan,
            "weight.det": (1.0 + 0.1 * e if gn else 1.0) if arch in ("shared", "dual", "det_only") else math.nan,
            "weight.view": (1.0 - 0.1 * e if gn else 1.0) if arch in ("shared", "dual", "cls_only") else math.nan,
            "grad.cosine": (0.3 - 0.2 * e) if arch == "shared" else math.nan,
            "val.map": det, "val.map50": min(1.0, 1.5 * det) if math.isfinite(det) else math.nan,
            "val.view_accuracy": view, "val.objective": _objective(arch, det, view),
            "time.train_s": train_s * e / n, "time.total_s": train_s * e / n + e,
            "eff.gflops": GFLOPS[arch], "eff.params_total": PARAMS[arch], "eff.latency_ms_b1": 5 * GFLOPS[arch],
            "eff.peak_mem_mb": 100 * GFLOPS[arch],
        })
    return rows


def write_study(folder: Path, trials: list | None = None, manifest: bool = True) -> Path:
    """Write trials.parquet, epochs.parquet (and manifest.json) of the hand-made study into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    trial_rows, epoch_rows_all = [], []
    for tid, arch, balancer, m, v, train_s, status, repeat_of, over in (TRIALS if trials is None else trials):
        base = TrialConfig.from_partial({"balancer.name": balancer}).to_flat()  # with that balancer's own keys
        cfg = {**base, "arch": arch, "train.epochs": EPOCHS, **over}
        rows = epoch_rows(tid, arch, balancer, m, v, train_s, status)
        error = "RuntimeError: injected failure" if status == "error" else ""
        trial_rows.append(trial_row(tid, "compare", cfg, rows, status=status, error=error, repeat_of=repeat_of))
        epoch_rows_all += [{"trial_id": tid, **r} for r in rows]
    write_atomic(trials_table(trial_rows), folder / "trials.parquet")
    write_atomic(epochs_table(epoch_rows_all), folder / "epochs.parquet")
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({
            "created": "2025-01-01T00:00:00", "command": ["python", "-m", "study.run", "--space", "compare"],
            "base_config": {"data.source": "synthetic", "data.imgsz": 64}, "dataset_fingerprint": "abc",
            "versions": {"python": "3.11"}, "git_commit": "deadbeef"}))
    return folder
