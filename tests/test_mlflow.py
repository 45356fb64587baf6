"""``--mlflow``: a study is a parent run in a real MLflow server (127.0.0.1, SQLite), each trial a child run.

The server is MLflow's own (``mlflow server``), as a hospital would host it, with its artifacts served through
it; everything is read back through MLflow's client, never from its database file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from search_spaces.registry import method_label
from study.analyze import main as analyze_main
from study.cli import run_cli
from study.run import main as run_main
from tests.conftest import TINY
from tests.loopback_cluster import ROOT, free_port

mlflow = pytest.importorskip("mlflow")  # the [mlflow] extra; CI installs it


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    url = f"http://127.0.0.1:{free_port()}"
    port = url.rsplit(":", 1)[1]
    log = open(folder / "server.log", "w")  # noqa: SIM115  closed in the finally
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", port,
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
         str(folder / "artifacts"), "--workers", "1"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def test_a_folds_study_is_a_parent_run_with_a_child_run_per_trial(ray_cluster, mlflow_server, tmp_path, capsys):
    argv = ["--storage", str(tmp_path), "--name", "f", *TINY, "--set", "train.bn_recalibration_batches=1",
            "--space", "compare", "--methods", "shared/gradnorm,dual", "--samples", "0", "--epochs", "2",
            "--folds", "2", "--seeds", "1", "--split", "patient", "--mlflow", mlflow_server,
            "--mlflow-experiment", "echo"]
    assert run_main(argv) == 0
    study = tmp_path / "f"
    assert analyze_main([str(study)]) == 0
    out = capsys.readouterr().out
    assert "mlflow: report logged to study run" in out

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("echo")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 1 + len(children)

    # the study: what it is (commit, data, command) and what it found
    manifest = json.loads((study / "manifest.json").read_text())
    tags, params = parent.data.tags, parent.data.params
    assert tags["mtl.git_commit"] == manifest["git_commit"]
    assert tags["mtl.dataset_fingerprint"] == manifest["dataset_fingerprint"]
    assert "--folds 2" in tags["mtl.command"] and params["folds"] == "2" and params["space"] == "compare"
    assert parent.info.status == "FINISHED" and parent.info.run_name == "f"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "headline.json", "verdict.json", "manifest.json", "study"} <= artifacts
    shipped = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {f"study/{n}" for n in ("folds.parquet", "test_runs.parquet", "headline.parquet", "verdict.parquet",
                                   "costs.parquet", "manifest.json")} <= shipped
    headline = pd.read_parquet(study / "headline.parquet").set_index("method")
    verdict = pd.read_parquet(study / "verdict.parquet")
    metrics = parent.data.metrics
    for method in ("shared/gradnorm", "dual"):
        assert metrics[f"heldout/{method}/test.map50.mean"] == pytest.approx(headline.loc[method, "test.map50.mean"])
    row = verdict[verdict["metric"] == "view_accuracy"].iloc[0]
    key = f"verdict/{row['method_a']} vs {row['method_b']}/view_accuracy/diff_mean"
    assert metrics[key] == pytest.approx(row["diff_mean"])

    # every trial of every fold (its search, here none, and its re-runs) is one child run
    trials = pd.concat([pd.read_parquet(p) for p in sorted(study.glob("fold-*/trials.parquet"))])
    epochs = pd.concat([pd.read_parquet(p) for p in sorted(study.glob("fold-*/epochs.parquet"))])
    assert len(trials) == 4 and len(children) == 4
    by_trial = {r.data.tags["mtl.trial_id"]: r for r in children}
    assert set(by_trial) == set(trials["trial_id"])
    for t in trials.to_dict("records"):
        child = by_trial[t["trial_id"]]
        assert child.data.tags["mtl.method"] == method_label(t) and child.data.tags["mtl.fold"] == str(t["data.fold"])
        assert child.data.tags["mtl.status"] == "finished" and child.info.status == "FINISHED"
        assert child.data.params["optim.lr"] == str(t["optim.lr"]) and child.data.params["arch"] == t["arch"]
        # every epoch's metrics at step = epoch, and the best epoch's as trials.parquet holds them
        history = sorted(client.get_metric_history(child.info.run_id, "val.objective"), key=lambda h: h.step)
        mine = epochs[epochs["trial_id"] == t["trial_id"]].sort_values("epoch")
        assert [h.step for h in history] == list(mine["epoch"]) == [1, 2]
        assert [h.value for h in history] == pytest.approx(list(mine["val.objective"]))
        assert child.data.metrics["best.val.objective"] == pytest.approx(t["best.val.objective"])
        assert child.data.metrics["best_epoch"] == t["best_epoch"]


def test_without_the_flag_mlflow_is_never_imported():
    code = ("import sys, study.run, study.analyze, study.tuning.phases, study.tuning.search, study.heldout.folds, "
            "trainables.ray_trial; print('mlflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


@pytest.mark.parametrize(("flag", "env", "message"), [
    ([], {}, "--mlflow without a URI reads MLFLOW_TRACKING_URI, which is not set"),
    (["http://127.0.0.1:{port}"], {}, "no MLflow server answers there"),
])
def test_a_tracking_server_that_is_not_there_is_one_line_before_anything_runs(tmp_path, capsys, monkeypatch, flag,
                                                                             env, message):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ["--storage", str(tmp_path), "--name", "x", *TINY, "--mlflow",
            *(f.format(port=free_port()) for f in flag)]
    assert run_cli(run_main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x").exists()
