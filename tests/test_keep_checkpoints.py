"""``prune_trial`` (study/tuning/keep_checkpoints.py) on real checkpoint folders: what a finished trial keeps.

A trial folder is Tune's layout, ``<trial>/checkpoint_<6-digit index>/checkpoint.pt``, each file a torch
state written by trainables/tune.py: the epoch it holds and the history of every epoch so far (the
weights play no part in pruning, so these states carry none)."""

from __future__ import annotations

from pathlib import Path

from study.store.checkpoints import read_state, save_checkpoint, trial_checkpoint
from study.tuning.keep_checkpoints import prune_trial


def history(objectives: list[float]) -> list[dict[str, float]]:
    """Epoch rows 1..n as the engine reports them, with the score the best epoch is chosen by."""
    return [{"epoch": e, "val.objective": v} for e, v in enumerate(objectives, start=1)]


def save(trial: Path, index: int, epoch: int, objectives: list[float]) -> Path:
    """``checkpoint_<index>`` holding ``epoch``, with the history the trial had when it saved it."""
    return save_checkpoint({"epoch": epoch, "history": history(objectives)},
                           trial / f"checkpoint_{index:06d}" / "checkpoint.pt").parent


def folders(trial: Path) -> list[str]:
    return sorted(p.name for p in trial.iterdir() if p.is_dir())


def test_best_epoch_in_the_middle_keeps_the_best_and_the_latest(tmp_path):
    trial = tmp_path / "study" / "trial_abc"
    scores = [0.1, 0.3, 0.5, 0.4, 0.2]  # the best epoch is 3 (0.5), the latest 5
    made = [save(trial, i, i + 1, scores[: i + 1]) for i in range(5)]
    (trial / "result.json").write_text("{}")  # Tune's own files beside the checkpoints stay

    deleted = prune_trial(trial)

    assert sorted(deleted) == [made[0], made[1], made[3]]  # epochs 1, 2 and 4
    assert folders(trial) == ["checkpoint_000002", "checkpoint_000004"]
    assert (trial / "result.json").is_file()
    assert int(read_state(made[2] / "checkpoint.pt")["epoch"]) == 3
    # what evaluate --best and the held-out phase score afterwards: the best epoch's own checkpoint
    assert trial_checkpoint(tmp_path / "study", "abc", 3, strict=True) == made[2] / "checkpoint.pt"
    assert prune_trial(trial) == []  # pruning again deletes nothing


def test_a_resumed_trial_that_saved_its_best_epoch_twice_keeps_the_newest_copy(tmp_path):
    """A driver killed after a trial saved epoch 3 but before Tune's snapshot recorded it: ``--resume``
    restarts the trial from epoch 2's checkpoint and it trains and saves epoch 3 again, in a new folder.
    The final history (the latest checkpoint's) holds the re-run's epoch 3, so the copy to keep is the
    newest folder holding epoch 3 (checkpoint_of_epoch): its weights are the ones that scored what the
    history records; the first run's epoch 3 (another score, another model) goes with the other
    epochs that are neither the best nor the latest."""
    trial = tmp_path / "study" / "trial_xyz"
    first_run = [0.2, 0.3, 0.9]  # its epoch 3 scored 0.9, but that run's later epochs never happened
    rerun = [0.2, 0.3, 0.6, 0.4]  # resumed from epoch 2: epoch 3 again (0.6, the best), then epoch 4
    made = [save(trial, 0, 1, first_run[:1]), save(trial, 1, 2, first_run[:2]), save(trial, 2, 3, first_run),
            save(trial, 3, 3, rerun[:3]), save(trial, 4, 4, rerun)]

    deleted = prune_trial(trial)

    assert sorted(deleted) == [made[0], made[1], made[2]]  # the first run's epoch-3 copy among them
    assert folders(trial) == ["checkpoint_000003", "checkpoint_000004"]
    kept = read_state(made[3] / "checkpoint.pt")
    assert kept["epoch"] == 3 and kept["history"][-1]["val.objective"] == 0.6
    assert trial_checkpoint(tmp_path / "study", "xyz", 3, strict=True) == made[3] / "checkpoint.pt"


def test_a_trial_whose_best_epoch_is_its_latest_keeps_only_that_one(tmp_path):
    trial = tmp_path / "trial_up"
    scores = [0.1, 0.2, 0.3]
    made = [save(trial, i, i + 1, scores[: i + 1]) for i in range(3)]
    assert sorted(prune_trial(trial)) == made[:2]
    assert folders(trial) == ["checkpoint_000002"]


def test_when_the_best_epochs_checkpoint_is_missing_nothing_is_deleted(tmp_path):
    """A history naming a best epoch no folder holds (a layout we do not understand): keep everything."""
    trial = tmp_path / "trial_odd"
    save(trial, 0, 2, [0.9, 0.1])  # the best is epoch 1, but no folder holds epoch 1
    save(trial, 1, 3, [0.9, 0.1, 0.2])
    assert prune_trial(trial) == []
    assert folders(trial) == ["checkpoint_000000", "checkpoint_000001"]
