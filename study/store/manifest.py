"""``manifest.json``: what a study ran with, so a result can be traced and reproduced."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from study.store.trials import write_json_atomic

PACKAGES = ("torch", "torchvision", "ray", "optuna", "numpy", "pandas", "pyarrow", "plotly", "faster-coco-eval")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    """The commit of this tool's source tree (with ``-dirty`` when it has local changes), or "unknown"."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def driver_numerics(settings: Any, base: dict[str, Any]) -> Any:
    """The precision and memory format the base config resolves to on this machine, on the trials' device kind
    (CUDA when trials ask for GPUs, else the CPU): what the study prints once and the manifest records."""
    import torch

    from trainables.precision import Numerics

    device = torch.device("cuda" if getattr(settings, "gpus_per_trial", 0) > 0 else "cpu")
    return Numerics.resolve(str(base.get("train.precision", "auto")), str(base.get("train.memory_format", "auto")),
                            device)


def write_manifest(study_dir: Path, settings: Any, base: dict[str, Any], fingerprint: str, started: float,
                   finished: bool = True) -> None:
    """Write (or update) ``manifest.json``. A study writes it when it begins (``finished=False``: what a
    ``--resume`` is checked against, study/tuning/resume.py) and again when it ends; each run of the command
    is one entry of ``runs``, its ``finished`` time null until it ends."""
    path = study_dir / "manifest.json"
    previous: dict[str, Any] = {}
    if path.exists():
        import json

        previous = json.loads(path.read_text())
    manifest = {
        "created": previous.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, "-m", "study.run", *settings.argv],
        "runs": [*(r for r in previous.get("runs", []) if r.get("started") != started),
                 {"argv": settings.argv, "started": started, "finished": time.time() if finished else None}],
        "settings": dataclasses.asdict(settings),
        "base_config": base,
        "dataset_fingerprint": fingerprint,
        "seeds": {"study": settings.seed, "repeat_seeds": settings.seeds if settings.repeat_best else 0},
        # how trials compute where they run on this machine's kind of device; each trial's own is
        # trials.parquet's eff.precision / eff.memory_format (another node may resolve ``auto`` otherwise)
        "compute": {"requested": {"train.precision": base.get("train.precision"),
                                  "train.memory_format": base.get("train.memory_format")},
                    "resolved_on_driver": driver_numerics(settings, base).as_state()},
        "versions": versions(),
        "git_commit": git_commit(),
    }
    write_json_atomic(manifest, path)
