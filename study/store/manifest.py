"""``manifest.json``: what a study ran with, so a result can be traced and reproduced.

Each sitting of a study (its first run and each ``--resume``) is one entry of ``runs``: its argv, start and end,
the code it ran (``commit``, ``dirty``, ``code``: ``code_state``) and how ``auto`` precision and memory format
resolved on the driver (``numerics``: ``driver_numerics``); ``allow_code_change`` where a resume was let
across a change of code (study/tuning/resume.py checks a resume against the last sitting).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
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


# what "the code" is: a change anywhere else (README, docs/, tests/, results/) changes no result
CODE_FOLDERS = ("study", "trainables", "search_spaces")
CODE_FILES = ("pyproject.toml",)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def code_files(root: Path) -> list[Path]:
    """The project's code under ``root``: every ``*.py`` file in CODE_FOLDERS (hidden paths and ``__pycache__``
    aside) and CODE_FILES, sorted. Read from the file system, not from git, so a copy without ``.git`` (a Ray
    job's working directory) names the same files as the checkout it was copied from."""
    files = [root / name for name in CODE_FILES if (root / name).is_file()]
    for folder in CODE_FOLDERS:
        files += [p for p in (root / folder).rglob("*.py") if p.is_file()
                  and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def code_hash(root: Path) -> str:
    """sha256 over the project's code files (their paths and contents): equal exactly when the code is."""
    digest = hashlib.sha256()
    for path in code_files(root):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def code_state(root: Path) -> dict[str, Any]:
    """The code at ``root``: ``{"commit", "dirty", "code"}``.

    ``commit``: git's HEAD when ``root`` is the top of a git checkout, else "unknown". ``dirty``: whether the
    project's code (CODE_FOLDERS and CODE_FILES only: a changed README, docs/ or tests/ file is not a code
    change) has uncommitted changes, tracked or new untracked files; None without git. ``code``: ``code_hash``,
    which identifies the code itself: two sittings ran the same code exactly when their ``code`` is equal,
    whatever their commits (a commit that touched only docs changes no code) and however dirty their trees (a
    tree dirty in the same way is the same code)."""
    commit, dirty = "unknown", None
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        if Path(top).resolve() == root.resolve():
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                    timeout=10, check=True).stdout.strip()
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--",
                                     *CODE_FOLDERS, *CODE_FILES], cwd=root, capture_output=True, text=True,
                                    timeout=10, check=True).stdout.strip()
            dirty = bool(status)
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", None
    return {"commit": commit, "dirty": dirty, "code": code_hash(root)}


@functools.cache
def project_code_state() -> dict[str, Any]:
    """``code_state`` of this tool's own tree, taken once per process: the code a sitting imported when it
    began (an edit while it runs is the next sitting's code)."""
    return code_state(PROJECT_ROOT)


def describe_code(state: dict[str, Any]) -> str:
    """``commit 1a2b3c4d5e6f``, ``commit 1a2b3c4d5e6f with uncommitted changes to project code (code 9f8e7d6c)``,
    or ``code 9f8e7d6c (not a git checkout)``."""
    code = str(state.get("code") or "?")[:8]
    if state.get("commit", "unknown") == "unknown":
        return f"code {code} (not a git checkout)"
    dirty = f" with uncommitted changes to project code (code {code})" if state.get("dirty") else ""
    return f"commit {str(state['commit'])[:12]}{dirty}"


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
    is one entry of ``runs``, its ``finished`` time null until it ends, with the code it runs (``code_state``) and
    its driver's resolved ``numerics``; a ``--resume --allow-code-change`` is marked ``allow_code_change``."""
    path = study_dir / "manifest.json"
    previous: dict[str, Any] = {}
    if path.exists():
        import json

        previous = json.loads(path.read_text())
    numerics = driver_numerics(settings, base).as_state()
    sitting = {"argv": settings.argv, "started": started, "finished": time.time() if finished else None,
               **project_code_state(), "numerics": numerics}
    if getattr(settings, "resume", False) and getattr(settings, "allow_code_change", False):
        sitting["allow_code_change"] = True
    manifest = {
        "created": previous.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, "-m", "study.run", *settings.argv],
        "runs": [*(r for r in previous.get("runs", []) if r.get("started") != started), sitting],
        "settings": dataclasses.asdict(settings),
        "base_config": base,
        "dataset_fingerprint": fingerprint,
        "seeds": {"study": settings.seed, "repeat_seeds": settings.seeds if settings.repeat_best else 0},
        # how trials compute where they run on this machine's kind of device; each trial's own is
        # trials.parquet's eff.precision / eff.memory_format (another node may resolve ``auto`` otherwise)
        "compute": {"requested": {"train.precision": base.get("train.precision"),
                                  "train.memory_format": base.get("train.memory_format")},
                    "resolved_on_driver": numerics},
        "versions": versions(),
        "git_commit": git_commit(),
    }
    write_json_atomic(manifest, path)
