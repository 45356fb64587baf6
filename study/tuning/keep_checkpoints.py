"""Score-based checkpoint keeping: a finished trial keeps its best epoch's checkpoint and its latest.

Tune's own ``CheckpointConfig(num_to_keep=K, checkpoint_score_attribute=...)`` keeps the K best by
score plus only the newest one, and deletes the previous newest as soon as a better-scored one
arrives. A driver killed before its next experiment snapshot then resumes from a deleted checkpoint
(the failure the SIGKILL test in tests/test_study.py once caught). So Tune keeps every checkpoint
while a trial runs, and this callback prunes a trial once it has completed: Tune never restores a completed trial,
and a trial Tune still thinks is running (driver killed before its snapshot) resumes from its
latest checkpoint, which is always kept.

The best epoch is read from the latest checkpoint's own ``history`` (study/store/selection.py's rule), so
pruning needs no state of its own and is right after a ``--resume`` too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ray.tune import Callback

from study.store.checkpoints import checkpoint_of_epoch, read_state, trial_checkpoints
from study.store.selection import best_epoch


def prune_trial(trial_dir: Path) -> list[Path]:
    """Delete every checkpoint of a finished trial except its best epoch's and its latest; returns
    the folders deleted. Leaves everything in place when the best epoch cannot be found."""
    found = trial_checkpoints(trial_dir)
    if len(found) <= 1:
        return []
    try:
        history = read_state(found[-1]).get("history") or []
    except Exception:
        return []
    best = best_epoch(history)
    keep = {found[-1]}
    if best is not None:
        kept = checkpoint_of_epoch(found, int(best["epoch"]))
        if kept is None:
            return []  # the best epoch's checkpoint is not where we expect: delete nothing
        keep.add(kept)
    deleted = [p.parent for p in found if p not in keep]
    for folder in deleted:
        shutil.rmtree(folder, ignore_errors=True)
    return deleted


class KeepBestCheckpoints(Callback):
    """Prunes each trial's checkpoints to the best epoch's and the latest when the trial completes
    (not when it errors: an errored trial may be resumed from its latest)."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.path:
            prune_trial(Path(trial.path))
