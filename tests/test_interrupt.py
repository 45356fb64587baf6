"""One Ctrl-C stops a whole folds study, and ``--resume`` finishes it (study/tuning/interrupt.py).

Tune catches SIGINT during a phase, saves and returns as if the phase were done: the driver used to go on to
measure costs and run the next fold. Here the study runs in its own process and gets SIGINT as a terminal
sends it (to the process group; Ray's own processes run in groups of their own) during fold 0's search."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from ray.tune import Tuner

from study.run import main as run_main
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
EPOCH_LINE = re.compile(r"^\[0/2 trials done\] trial \w+ epoch 1: ", re.MULTILINE)  # fold 0's search, running
# Ray's lines the tool does not use (study/tuning/ray_console.py): none may reach the console
RAY_NOISE = ("TensorBoard", "View detailed results", "Configuration for experiment", "Tuner.restore",
             "Token authentication is enabled", "Started a local Ray instance", "Stop signal received",
             "performance bottleneck")


@pytest.mark.slow  # two folds' studies on 2 cores, a Ray start of its own and a resume: minutes
def test_one_ctrl_c_stops_the_whole_folds_study_and_resume_finishes_it(ray_cluster, tmp_path):
    argv = ["--storage", str(tmp_path), "--name", "f", *TINY, "--set", "train.bn_recalibration_batches=1",
            "--space", "gradnorm", "--samples", "2", "--epochs", "3", "--max-concurrent", "1", "--folds", "2",
            "--seeds", "1", "--split", "patient"]
    log = tmp_path / "study.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *argv], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not EPOCH_LINE.search(log.read_text()):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "fold 0's search did not start within 10 minutes"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # one Ctrl-C
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    said = log.read_text()
    assert code == 130, said[-3000:]
    assert "interrupted: the study stops once Tune has saved this phase" in said
    assert said.rstrip().endswith("interrupted: the study stopped; what it finished is kept — continue it with the "
                                  "same command and --resume --name f"), said[-3000:]
    # nothing after the search ran: no re-run, no costs, no second fold
    assert "repeat-best:" not in said and "costs:" not in said and "fold 2/2" not in said, said[-3000:]
    assert "Traceback" not in said
    assert not [noise for noise in RAY_NOISE if noise in said], said
    study = tmp_path / "f"
    assert Tuner.can_restore(str(study / "fold-0"))  # Tune saved the search it stopped
    assert not (study / "headline.parquet").exists()

    # the same command and --resume (--allow-code-change: this test runs for minutes, and a working tree may change
    # meanwhile; refusing a changed code is tests/test_resume_code.py's)
    assert run_main([*argv, "--resume", "--allow-code-change"]) == 0
    assert (study / "headline.parquet").is_file() and (study / "verdict.parquet").is_file()
    for fold in (0, 1):
        trials = pd.read_parquet(study / f"fold-{fold}" / "trials.parquet")
        searched = trials[trials["repeat_of"].fillna("").astype(str) == ""]
        assert len(searched) == 2 and set(searched["status"]) == {"finished"}, trials[["trial_id", "status"]]
