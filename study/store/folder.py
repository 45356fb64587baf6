"""A study's folder: checked before any work is done, and where its re-runs live beside it.

``STORAGE/NAME`` holds the search's Tune experiment (trial folders, checkpoints) and this tool's
files (``trials.parquet``, ``epochs.parquet``, ``manifest.json``, ``optuna.db``, ...); the
``--repeat-best`` re-runs are a second Tune experiment in ``STORAGE/NAME-repeats`` (Tune owns an
experiment folder's layout, so the re-runs cannot share the search's).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from study.errors import UsageError

MIN_FREE_BYTES = 512 * 2**20  # a few checkpoints per trial plus the Parquet files; less is a failure mid-study
REPEATS_SUFFIX = "-repeats"
OPTUNA_DB = "optuna.db"  # the study's Optuna storage: optuna-dashboard sqlite:///STORAGE/NAME/optuna.db
_CREATED: list[Path] = []  # study folders this process created (prepare_folder), for discard_unstarted
_STARTED: list[bool] = []  # set by mark_started: this process's study reached its first phase (trials may run)


def repeats_dir(study_dir: Path) -> Path:
    """The Tune experiment folder of a study's --repeat-best re-runs (beside the search's)."""
    return study_dir.parent / f"{study_dir.name}{REPEATS_SUFFIX}"


def search_dir_of(folder: Path) -> Path:
    """The study folder a Tune experiment folder belongs to: itself, or the study its re-runs are of."""
    return folder.parent / folder.name.removesuffix(REPEATS_SUFFIX)


def prepare_folder(storage: str, name: str | None, space: str, resume: bool, overwrite: bool) -> Path:
    """The study folder ``storage/name`` (default name: ``SPACE-TIME``, ``SPACE-TIME-2``, ... for studies started
    in the same second), checked before any work: writable, enough free space, never overwritten without
    ``overwrite`` (which removes its re-runs too)."""
    root = Path(storage).expanduser().resolve()
    study_dir = root / (name or f"{space}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as err:
        raise UsageError(f"--storage {root}: cannot write there ({err.strerror or err}); "
                         "choose a folder you can write to") from None
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise UsageError(f"--storage {root}: only {free / 2**20:.0f} MiB free; a study needs at least "
                         f"{MIN_FREE_BYTES / 2**20:.0f} MiB for checkpoints and results")
    if name is None and not resume:  # a default name is new: never another study's folder
        _CREATED.append(_claim(study_dir))
        return _CREATED[-1]
    if study_dir.exists() and any(study_dir.iterdir()):
        if resume:
            return study_dir
        if not overwrite:
            raise UsageError(f"{study_dir} already holds a study; use --resume to continue it, "
                             "--overwrite to replace it, or another --name")
        shutil.rmtree(study_dir)
        shutil.rmtree(repeats_dir(study_dir), ignore_errors=True)  # its re-runs belong to the study replaced
    elif resume:
        raise UsageError(f"--resume: there is no study at {study_dir} to resume")
    if not study_dir.exists():
        _CREATED.append(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    return study_dir


def mark_started() -> None:
    """The study this process prepared reaches its first phase: trials may run from here on, and whatever they
    leave is a study to resume (``discard_unstarted`` keeps it)."""
    _STARTED.append(True)


def current_study() -> Path | None:
    """The study folder this process created, if any (its name is the one ``--resume --name`` takes)."""
    return _CREATED[-1] if _CREATED else None


def was_started() -> bool:
    return bool(_STARTED)


def discard_unstarted() -> None:
    """Remove the study folders this process created when it stops before any trial could run (a port in use, a
    bad data.yaml, a node check failing, Ctrl-C while decoding): such a start leaves only its manifest, which
    would make the same ``--name`` a study that "already holds a study" and needs ``--resume``. A folder this
    process did not create (``--resume``, or another's) is never touched; one it created holds only its files."""
    started = bool(_STARTED)
    _STARTED.clear()  # (a test runs several studies in one process: each is judged on its own)
    while _CREATED:
        folder = _CREATED.pop()
        if not started:
            shutil.rmtree(folder, ignore_errors=True)


def _claim(study_dir: Path) -> Path:
    """A new folder named ``study_dir`` or ``study_dir-2``, ``-3``, ...: ``mkdir`` claims it atomically, so two
    studies started side by side in the same second never share one."""
    for k in range(1, 1000):
        candidate = study_dir if k == 1 else study_dir.with_name(f"{study_dir.name}-{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise UsageError(f"{study_dir}: a thousand studies of that name; give --name")
