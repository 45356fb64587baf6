"""Faults on a real local Ray cluster: deterministic failures recorded (not retried), a killed worker
retried from its checkpoint, unusable storage refused at start."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pandas as pd
import pytest

from study.cli import run_cli
from study.run import main as run_main
from study.tuning.processes import descendants
from tests import faults
from tests.conftest import TINY


@pytest.mark.parametrize(("fault", "status", "reason"), [
    (faults.NaNWeights, "diverged", "non-finite loss"),
    (faults.OutOfMemoryOnSecondStep, "oom", "OutOfMemoryError: CUDA out of memory"),
])
def test_deterministic_failures_are_recorded_once(ray_cluster, tmp_path, monkeypatch, fault, status, reason):
    faults.use_in_gradnorm_space(monkeypatch, fault)  # a balancer that fails, imported by the trial's worker
    argv = ["--storage", str(tmp_path), "--name", "s", "--space", "gradnorm", "--samples", "1", "--epochs", "2",
            *TINY]
    assert run_main(argv) == 0  # the study completes
    trials = pd.read_parquet(tmp_path / "s" / "trials.parquet")
    assert list(trials["balancer.name"]) == [faults.path_of(fault)]
    assert list(trials["status"]) == [status]
    assert reason in trials.loc[0, "error"]
    # not retried: Tune saw a normal end, so there is exactly one run of the trial
    runs = [p for p in (tmp_path / "s").iterdir() if p.is_dir() and p.name.startswith("trial_")]
    assert len(runs) == 1


def _trial_worker_pids() -> list[int]:
    """This session's trial workers only: another Ray cluster on the machine (a second test run, a
    user's study) has ImplicitFunc workers too, and killing those would fail both runs."""
    # ".train": the actor running a trial now; an idle actor an earlier test's Tuner left alive is not the trial
    out = subprocess.run(["pgrep", "-f", r"ray::ImplicitFunc\.train"], capture_output=True, text=True).stdout
    ours = set(descendants(os.getpid()))  # the session's Ray processes are children of this process
    return [int(p) for p in out.split() if int(p) in ours]


def test_killed_worker_is_retried_from_its_checkpoint(ray_cluster, tmp_path):
    epochs_file = tmp_path / "k" / "epochs.parquet"
    killed: list[int] = []

    def kill_after_first_epoch() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not killed:
            if epochs_file.exists() and len(pd.read_parquet(epochs_file)) >= 1:
                for pid in _trial_worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
    killer.start()
    argv = ["--storage", str(tmp_path), "--name", "k", "--space", "gradnorm", "--samples", "1", "--epochs", "3",
            "--max-concurrent", "1", *TINY]
    assert run_main(argv) == 0
    killer.join(timeout=5)
    assert killed, "no trial worker was found to kill"
    trials = pd.read_parquet(tmp_path / "k" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "k" / "epochs.parquet").sort_values("epoch")
    assert list(trials["status"]) == ["finished"]
    assert list(epochs["epoch"]) == [1, 2, 3]
    # the retry continued from the checkpoint of an epoch already done, not from scratch
    assert epochs["resumed_from_epoch"].iloc[-1] >= 1


@pytest.mark.parametrize("storage", ["/proc/mtl-study-results", "{tmp}/a-file/results"])
def test_unwritable_storage_is_refused_before_any_work(tmp_path, capsys, storage):
    (tmp_path / "a-file").write_text("not a folder")
    code = run_cli(run_main, ["--storage", storage.format(tmp=tmp_path), "--name", "x", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write there" in err[0]
