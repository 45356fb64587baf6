"""What a study cost (study/analysis/compute.py): trials, epochs against FIFO's, CPU-hours and wall time, by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from study.analysis.compute import compute_rows, compute_table, fmt_hours, sittings_seconds
from study.analysis.loading import Study, prepare_trials


def epoch(trial: str, n: int, attempt: int, started: float, reported: float, seconds: float) -> dict:
    return {"trial_id": trial, "epoch": n, "attempt": attempt, "started_at": started, "reported_at": reported,
            "time.epoch_s": seconds}


def hand_study() -> Study:
    """gradnorm: trial a trained epochs 1-3, was interrupted, and its second start trained 3 again and 4; trial b
    was stopped after epoch 1 (ASHA). dual: one re-run of 2 epochs."""
    trials = prepare_trials(pd.DataFrame([
        {"trial_id": "a", "arch": "shared", "balancer.name": "gradnorm", "repeat_of": "", "train.epochs": 4},
        {"trial_id": "b", "arch": "shared", "balancer.name": "gradnorm", "repeat_of": "", "train.epochs": 4},
        {"trial_id": "r", "arch": "dual", "balancer.name": "equal", "repeat_of": "x", "train.epochs": 4},
    ]))
    epochs = pd.DataFrame([
        *(epoch("a", n, 1, 0.0, 30.0 * n + 10, 20.0) for n in (1, 2, 3)),  # worker 0 .. 100 s
        *(epoch("a", n, 2, 200.0, 200.0 + 30 * (n - 2), 25.0) for n in (3, 4)),  # worker 200 .. 260 s
        epoch("b", 1, 1, 0.0, 50.0, 40.0),
        *(epoch("r", n, 1, 160.0, 160.0 + 30 * n, 30.0) for n in (1, 2)),  # worker 160 .. 220 s
    ])
    manifest = {"runs": [{"started": 0.0, "finished": None}, {"started": 150.0, "finished": 400.0}],
                "settings": {"cpus_per_trial": 2}}
    return Study(Path("hand"), trials, epochs, manifest)


def test_trials_epochs_and_cpu_hours_by_hand():
    rows = {r["method"]: r for r in compute_rows(hand_study(), cpus_per_trial=2)}
    g, d, every = rows["shared/gradnorm"], rows["dual"], rows["all"]
    assert (g["trials"], g["epochs"], g["fifo_epochs"], g["reruns"]) == (2, 6, 8, 0)  # epoch 3 paid twice
    assert g["train_hours_search"] == pytest.approx(2 * (3 * 20 + 2 * 25 + 40) / 3600)
    assert g["worker_hours"] == pytest.approx(2 * (100 + 60 + 50) / 3600)
    assert (d["trials"], d["reruns"], d["rerun_epochs"]) == (0, 1, 2)
    assert d["train_hours_reruns"] == pytest.approx(2 * 60 / 3600) and d["worker_hours"] == pytest.approx(2 * 60 / 3600)
    assert every["worker_hours"] == pytest.approx(g["worker_hours"] + d["worker_hours"])
    assert (every["trials"], every["epochs"], every["reruns"]) == (2, 6, 1)


def test_a_killed_sitting_ends_at_its_last_epoch_before_the_next_began():
    study = hand_study()
    # sitting 1 (killed, no end): its last report before 150 s is trial a's epoch 3 at 100 s; sitting 2: 150 .. 400
    assert sittings_seconds(study.manifest, study.epochs) == [100.0, 250.0]
    table = compute_table(study)
    assert table.endswith("wall time 6 min in 2 sittings (2 min, 4 min); 2 CPU per trial")
    assert "| **all** | **2** | **6 (8)** | **1 (2)** |" in table


def test_without_timestamps_the_worker_hours_and_the_sitting_are_unknown_not_zero():
    study = hand_study()
    study.epochs = study.epochs.drop(columns=["started_at", "reported_at"])
    rows = {r["method"]: r for r in compute_rows(study)}
    assert rows["dual"]["train_hours_reruns"] == pytest.approx(60 / 3600)  # the training loop still counts
    assert pd.isna(rows["all"]["worker_hours"])
    assert "plus 1 of unknown length" in compute_table(study)


def test_hours_read_as_hours_and_minutes():
    assert (fmt_hours(7920), fmt_hours(59 * 60), fmt_hours(float("nan"))) == ("2 h 12 min", "59 min", "—")


def test_a_study_without_epochs_trained_nothing():
    study = hand_study()
    study.epochs = pd.DataFrame()
    every = compute_rows(study)[-1]
    assert (every["trials"], every["epochs"], every["reruns"], every["train_hours_search"]) == (2, 0, 1, 0.0)
