"""A node that dies mid-study, and a head (the driver's whole cluster) that dies: nothing is lost.

Both on a real two-node Ray cluster on this machine (tests/loopback_cluster.py: loopback only, token
authentication on), the study started from its command line as a user would:

- the **worker node** is killed (every process of it, SIGKILL) while its trial is mid-training, after at least
  one checkpoint: Tune retries that trial from its last checkpoint on the surviving node (``FailureConfig``);
- the **head** is killed with the driver mid-study; the same command with ``--resume`` on a new cluster
  continues every trial from its last checkpoint.

Either way every trial ends ``finished``, each trial's epochs 1..E are in epochs.parquet exactly once and in
order (the retry's epochs carry ``attempt`` 2), and trials.parquet and the Optuna study agree on the trials.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import TINY
from tests.loopback_cluster import ROOT, TwoNodes, two_node_cluster

pytestmark = pytest.mark.slow  # three two-node clusters and three studies: about three minutes on 2 cores

EPOCHS = 6
HEAD_EPOCHS = 40  # the head test waits for Tune's experiment snapshot (every 10 s at most) before it kills
# Ray notices a dead node by missed health checks (by default 5 misses of a check every 3 s); a test need not
# wait that long, so the cluster checks every second (each check keeps Ray's own timeout: a loaded machine
# answers late, and a node declared dead while it starts fails the test for nothing)
FAST_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def study_command(nodes: TwoNodes, storage: Path, epochs: int, *extra: str) -> list[str]:
    # 96 training frames: a second or two per epoch here, time enough to kill a node between two epochs
    return [sys.executable, "-m", "study.run", "--address", nodes.address, "--storage", str(storage), "--name", "n",
            "--space", "gradnorm", "--samples", "2", "--max-concurrent", "2", "--epochs", str(epochs), *TINY,
            "--set", "data.synthetic_train=96", *extra]


def start(nodes: TwoNodes, storage: Path, log: Path, epochs: int) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115  the driver's output, read on failure; closed with the process
    return subprocess.Popen(study_command(nodes, storage, epochs), cwd=ROOT, env=nodes.env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(driver: subprocess.Popen, log: Path, epochs_file: Path, ready: Callable[[pd.DataFrame], bool]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if epochs_file.exists() and ready(pd.read_parquet(epochs_file)):
            return
        time.sleep(0.2)
    pytest.fail(f"the study ended or stalled before it could be interrupted:\n{log.read_text()[-3000:]}")


def check_nothing_lost(study: Path, n_epochs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every trial finished, each trial's epochs 1..E once and in order, Optuna and trials.parquet agree."""
    trials = pd.read_parquet(study / "trials.parquet")
    epochs = pd.read_parquet(study / "epochs.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}, trials[["trial_id", "status", "error"]]
    for trial_id, rows in epochs.groupby("trial_id"):
        assert list(rows["epoch"]) == list(range(1, n_epochs + 1)), (trial_id, list(rows["epoch"]))
        assert rows["attempt"].is_monotonic_increasing, rows[["epoch", "attempt"]]  # a retry never goes back
        assert trial_id in set(trials["trial_id"])
    assert dict(zip(trials["trial_id"], trials["attempts"], strict=True)) == \
        epochs.groupby("trial_id")["attempt"].max().to_dict()
    db = f"sqlite:///{study / 'optuna.db'}"
    [summary] = optuna.get_all_study_summaries(db)  # the gradnorm space: one method, one Optuna study
    told = optuna.load_study(study_name=summary.study_name, storage=db).get_trials(deepcopy=False)
    complete = [t for t in told if t.state == optuna.trial.TrialState.COMPLETE]
    # each Tune trial is one Optuna trial, told once; anything else Optuna holds is an orphan the killed driver
    # asked for after its last snapshot, marked failed on resume (study/tuning/searchers.py)
    assert sorted(t.user_attrs["tune_trial_id"] for t in complete) == sorted(trials["trial_id"])
    assert all(t.state == optuna.trial.TrialState.FAIL for t in told if t not in complete)
    return trials, epochs


def test_a_worker_node_that_dies_mid_study_loses_nothing(tmp_path):
    log = tmp_path / "driver.log"
    with two_node_cluster(env_extra=FAST_DEATH) as nodes:
        driver = start(nodes, tmp_path, log, EPOCHS)
        try:
            # the worker node's trial has a checkpoint (an epoch reported) and is mid-training
            wait_for(driver, log, tmp_path / "n" / "epochs.parquet",
                     lambda e: ((e["node_id"] == nodes.worker) & (e["epoch"] >= 2)).any())
            nodes.remove_worker()
            assert driver.wait(timeout=600) == 0, log.read_text()[-3000:]
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
    trials, epochs = check_nothing_lost(tmp_path / "n", EPOCHS)
    moved = trials[trials["attempts"] == 2]
    assert len(moved) == 1, trials[["trial_id", "node_ids", "attempts"]]  # the trial of the node that died
    first, then = moved["node_ids"].iloc[0].split(",")
    assert (first, then) == (nodes.worker, nodes.head)  # trials.parquet lists the trials on both nodes
    assert set(trials["node_id"]) == {nodes.head}  # where each finished: the node that survived
    retry = epochs[(epochs["trial_id"] == moved["trial_id"].iloc[0]) & (epochs["attempt"] == 2)]
    # the retry continued from the checkpoint of an epoch done on the dead node, not from scratch
    resumed_from = int(retry["resumed_from_epoch"].iloc[0])
    assert resumed_from >= 1 and list(retry["epoch"]) == list(range(resumed_from + 1, EPOCHS + 1))
    assert set(retry["node_id"]) == {nodes.head}
    assert "attempt 2, from its last checkpoint" in log.read_text()


def test_a_head_that_dies_mid_study_is_resumed_on_a_new_cluster(tmp_path):
    log = tmp_path / "driver.log"
    epochs_file = tmp_path / "n" / "epochs.parquet"
    with two_node_cluster() as first:
        driver = start(first, tmp_path, log, HEAD_EPOCHS)
        try:
            # both trials have checkpoints, and Tune's experiment snapshot (what --resume restores: it is written at
            # most every 10 s) was taken after them; neither trial is done
            wait_for(driver, log, epochs_file, lambda e: e["trial_id"].nunique() == 2 and
                     e.groupby("trial_id")["epoch"].max().min() >= 2)
            ready = time.time()
            wait_for(driver, log, epochs_file, lambda e: max(
                (p.stat().st_mtime for p in (tmp_path / "n").glob("experiment_state-*.json")), default=0) > ready + 1)
            assert pd.read_parquet(epochs_file)["epoch"].max() < HEAD_EPOCHS, "the trials ended before the kill"
        finally:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the whole cluster die at once
            driver.wait()
            first.kill()
    before = pd.read_parquet(epochs_file)
    with two_node_cluster() as second:
        done = subprocess.run(study_command(second, tmp_path, HEAD_EPOCHS, "--resume"), cwd=ROOT, env=second.env,
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    trials, epochs = check_nothing_lost(tmp_path / "n", HEAD_EPOCHS)
    assert set(trials["attempts"]) == {2}  # both were mid-training: each started again once
    for trial_id, rows in epochs.groupby("trial_id"):
        kept = before[before["trial_id"] == trial_id]
        retry = rows[rows["attempt"] == 2]
        # every epoch of the retry follows the checkpoint it resumed from; the epochs before it are the first
        # attempt's, kept as they were
        start_epoch = int(retry["resumed_from_epoch"].iloc[0])
        assert start_epoch >= 1 and list(retry["epoch"]) == list(range(start_epoch + 1, HEAD_EPOCHS + 1))
        assert set(rows.loc[rows["epoch"] <= start_epoch, "attempt"]) == {1}
        assert set(kept["epoch"]) >= set(range(1, start_epoch + 1))
