"""A finished study's ``optuna.db`` read back through the real optuna-dashboard server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pandas as pd
import pytest

from study.run import main as run_main
from tests.conftest import TINY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_dashboard_serves_the_studys_trials_and_best_epoch_values(ray_cluster, tmp_path):
    exe = shutil.which("optuna-dashboard")
    if exe is None:
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[dev]')")
    assert run_main(["--storage", str(tmp_path), "--name", "d", *TINY, "--space", "gradnorm", "--samples", "2",
                     "--epochs", "2"]) == 0
    trials = pd.read_parquet(tmp_path / "d" / "trials.parquet").set_index("trial_id")
    db = tmp_path / "d" / "optuna.db"
    assert db.is_file()

    port = free_port()
    server = subprocess.Popen([exe, f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # poll until the server answers
            try:
                studies = get(f"{base}/api/studies")["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stderr.read().decode()[-2000:] if server.stderr else ""
                assert time.monotonic() < deadline, "optuna-dashboard did not answer within 60 s"
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == ["shared/gradnorm"]  # one Optuna study per method
        assert studies[0]["directions"] == ["maximize"]
        detail = get(f"{base}/api/studies/{studies[0]['study_id']}")
        assert detail["objective_names"] == ["best.val.objective"]  # its charts' axis, not "Objective 0"
        served = detail["trials"]
        assert len(served) == len(trials) == 2
        for t in served:
            attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
            row = trials.loc[attrs["tune_trial_id"]]
            assert t["state"] == "Complete"
            # Optuna was told the trial's best epoch, the value trials.parquet reports as best.*
            assert t["values"] == [pytest.approx(float(row["best.val.objective"]))]
            assert int(attrs["best_epoch"]) == int(row["best_epoch"])
            assert {p["name"] for p in t["params"]} >= {"balancer.alpha", "optim.lr"}
            assert float(next(p["param_external_value"] for p in t["params"] if p["name"] == "balancer.alpha")) \
                == pytest.approx(float(row["balancer.alpha"]))
            assert [v["step"] for v in t["intermediate_values"]] == [1, 2]  # reported as the epochs ran
    finally:
        server.terminate()
        server.wait(timeout=10)
