"""``--mlflow``: a study is a parent run in a real MLflow server (127.0.0.1, SQLite), each trial a child run.

The server is MLflow's own (``mlflow server``), as a hospital would host it, with its artifacts served through
it; everything is read back through MLflow's client, never from its database file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


@contextlib.contextmanager
def serve_mlflow(folder: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real ``mlflow server`` on a free 127.0.0.1 port with a SQLite store in ``folder``: (its URL, its process)."""
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
        yield url, server
    finally:
        stop_server(server)
        log.close()


def stop_server(server: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, sig)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    with serve_mlflow(tmp_path_factory.mktemp("mlflow-server")) as (url, _):
        yield url


@pytest.fixture(scope="module")
def folds_study(ray_cluster, mlflow_server, tmp_path_factory) -> tuple[Path, str]:
    """A real two-fold study of two methods logged to the server, and its report: (its folder, what it printed)."""
    storage = tmp_path_factory.mktemp("mlflow-folds")
    argv = ["--storage", str(storage), "--name", "f", *TINY, "--set", "train.bn_recalibration_batches=1",
            "--space", "compare", "--methods", "shared/gradnorm,dual", "--samples", "0", "--epochs", "2",
            "--folds", "2", "--seeds", "1", "--split", "patient", "--mlflow", mlflow_server,
            "--mlflow-experiment", "echo"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run_main(argv) == 0
        assert analyze_main([str(storage / "f")]) == 0
    return storage / "f", printed.getvalue()


@pytest.mark.slow  # the module's two-fold study logged to a real server: 85 s once (CI runs it: .ci/run)
def test_a_folds_study_is_a_parent_run_with_a_child_run_per_trial(folds_study, mlflow_server):
    study, out = folds_study
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
        assert child.data.tags["mtl.phase"] == "rerun"  # --samples 0: every trial re-runs a default config
        assert child.data.params["optim.lr"] == str(t["optim.lr"]) and child.data.params["arch"] == t["arch"]
        # every epoch's metrics at step = epoch, and the best epoch's as trials.parquet holds them
        history = sorted(client.get_metric_history(child.info.run_id, "val.objective"), key=lambda h: h.step)
        mine = epochs[epochs["trial_id"] == t["trial_id"]].sort_values("epoch")
        assert [h.step for h in history] == list(mine["epoch"]) == [1, 2]
        assert [h.value for h in history] == pytest.approx(list(mine["val.objective"]))
        assert child.data.metrics["best.val.objective"] == pytest.approx(t["best.val.objective"])
        assert child.data.metrics["best_epoch"] == t["best_epoch"]


@pytest.mark.slow  # the module's two-fold study logged to a real server: 85 s once (CI runs it: .ci/run)
def test_a_studys_chosen_models_are_registered_with_their_cards_and_held_out_scores(folds_study, mlflow_server,
                                                                                     tmp_path, capsys):
    """Each method's chosen model (fold 0's: study/modelcard/choice.py) is a version of ``echo.<method>`` whose tags
    are the study's held-out scores, and whose artifacts are the ONNX model and its card; read back through MLflow."""
    from mlflow.onnx import load_model as load_onnx

    from study.modelcard.choice import chosen_model
    from study.tracking.mlflow_study import finish_parent

    study, out = folds_study
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    headline = pd.read_parquet(study / "headline.parquet").set_index("method")
    parent_id = json.loads((study / "mlflow.json").read_text())["run_id"]
    for method, name in (("shared/gradnorm", "echo.shared-gradnorm"), ("dual", "echo.dual")):
        assert f"mlflow: {method}'s chosen model registered as {name} version 1" in out
        [version] = client.search_model_versions(f"name = '{name}'")
        assert version.version == "1" and version.run_id == parent_id
        tags = version.tags
        chosen = chosen_model(study, method)
        assert chosen.fold == 0 and tags["mtl.fold"] == "0" and tags["mtl.folds"] == "2"
        assert tags["mtl.trial_id"] == chosen.trial_id and tags["mtl.method"] == method and tags["mtl.study"] == "f"
        assert tags["mtl.interval_unit"] == "fold" and "no fold is chosen by a score" in tags["mtl.rule"]
        # every held-out score of the method's headline row, exactly (a float's repr reads back as itself)
        pooled = [c for c in headline.columns if c.startswith("test.") and c.endswith((".mean", ".ci95"))
                  and pd.notna(headline.at[method, c])]
        assert pooled and all(float(tags[c]) == headline.at[method, c] for c in pooled)
        # this model's own scores: its row of fold 0's test_runs.parquet
        runs = pd.read_parquet(study / "fold-0" / "test_runs.parquet").set_index("trial_id")
        assert float(tags["model.test.map50"]) == runs.at[chosen.trial_id, "test.map50"]
        assert not any(mlflow_server.split("//")[1] in value for value in tags.values())  # no server address

        # the artifacts: an MLflow ONNX model with the card beside it, the card naming the same model
        slug = f"model/{name.split('.', 1)[1]}"
        shipped = {a.path for a in client.list_artifacts(parent_id, slug)}
        assert {f"{slug}/{f}" for f in ("MLmodel", "model.onnx", "model.card.md", "model.card.json")} <= shipped
        card_file = Path(client.download_artifacts(parent_id, f"{slug}/model.card.json", str(tmp_path)))
        card = json.loads(card_file.read_text())
        assert card["chosen"]["trial_id"] == chosen.trial_id and card["model"]["method"] == method
        assert card["heldout"]["procedure"]["interval_unit"] == "fold" and card["latency"]["median_ms"] > 0
        assert card["model"]["checkpoint"]["sha256"] == tags["mtl.checkpoint_sha256"]
        onnx_model = load_onnx(f"models:/{name}/1")
        assert [o.name for o in onnx_model.graph.output][-1] == "view_logits"
        local = study / "model" / name.split(".", 1)[1]
        assert json.loads((local / "model.card.json").read_text())["chosen"] == card["chosen"]

    # the study's end again (as a --resume ends): no second version of a model it registered
    capsys.readouterr()
    finish_parent(study)
    assert "is echo.dual version 1 already" in capsys.readouterr().out
    assert len(client.search_model_versions("name = 'echo.dual'")) == 1


@pytest.mark.slow  # the module's two-fold study logged to a real server: 85 s once (CI runs it: .ci/run)
def test_a_registry_that_stops_answering_costs_one_warning(folds_study, monkeypatch, capsys):
    """The server gone when the models are registered: one warning line, the study's files (and the models it
    exported) as they were."""
    from study.tracking import mlflow_study
    from study.tracking.mlflow_model import register_chosen
    from study.tracking.mlflow_study import ParentRun

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setattr(mlflow_study, "_lost", set())
    study, _ = folds_study
    files = [*study.glob("*.parquet"), *(study / "model").rglob("*.*")]  # the cards carry the time they were written
    before = {p: p.read_bytes() for p in files}
    gone = ParentRun(f"http://127.0.0.1:{free_port()}", "0", "echo", "0" * 32)
    register_chosen(study, gone)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: mlflow:")]
    assert len(warnings) == 1 and "stopped answering (registering shared/gradnorm's chosen model" in warnings[0], err
    assert {p: p.read_bytes() for p in files} == before  # nothing exported again for a server that is gone


@pytest.mark.slow  # the module's two-fold study logged to a real server: 85 s once (CI runs it: .ci/run)
def test_export_best_of_a_folds_study_takes_the_fold_it_is_told(folds_study, tmp_path, capsys):
    from study.export import main as export_main

    study, _ = folds_study
    out = tmp_path / "m.onnx"
    argv = ["--best", str(study), "--method", "dual", "--fold", "1", "--onnx", str(out), "--latency-repeats", "3"]
    assert run_cli(export_main, argv) == 0
    card = json.loads(out.with_suffix(".card.json").read_text())
    runs = pd.read_parquet(study / "fold-1" / "test_runs.parquet").set_index("trial_id")
    assert card["chosen"]["fold"] == 1 and runs.at[card["chosen"]["trial_id"], "method"] == "dual"
    assert card["model"]["checkpoint"]["file"].startswith("f/fold-1-repeats/")
    assert card["heldout"]["model"]["fold"] == 1 and card["heldout"]["procedure"]["interval_unit"] == "fold"
    assert card["heldout"]["model"]["metrics"]["view_accuracy"] == pytest.approx(
        runs.at[card["chosen"]["trial_id"], "test.view_accuracy"])
    assert card["data"]["split"]["fold"] == 1 and card["data"]["split"]["folds"] == 2
    assert "fold 1's model" in out.with_suffix(".card.md").read_text()


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


@pytest.mark.parametrize(("flag", "env"), [
    (["http://alice:s3cret-pw@127.0.0.1:5999"], {}),
    (["https://s3cret-pw@mlflow.example.org"], {}),  # a token as the user name
    ([], {"MLFLOW_TRACKING_URI": "http://alice:s3cret-pw@127.0.0.1:5999"}),
])
def test_credentials_in_the_tracking_uri_are_refused_and_never_echoed(tmp_path, capsys, monkeypatch, flag, env):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = ["--storage", str(tmp_path), "--name", "x", *TINY, "--mlflow", *flag]
    assert run_cli(run_main, argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --mlflow"), err
    assert "carries credentials" in err[0] and "MLFLOW_TRACKING_USERNAME" in err[0]
    assert "s3cret" not in captured.err + captured.out and "alice" not in captured.err + captured.out
    assert not (tmp_path / "x").exists()


def test_the_phase_tag_takes_a_fixed_vocabulary(tmp_path):
    from study.store.folder import repeats_dir
    from study.tracking.mlflow_study import PHASES, ParentRun
    from study.tuning.mlflow_trials import MlflowTrials
    from study.tuning.recorder import ResultsRecorder
    from study.tuning.search import phase_of

    assert PHASES == ("search", "rerun")
    study = tmp_path / "s"
    recorder = ResultsRecorder(study, "gradnorm")
    assert phase_of(study, recorder) == "search"
    assert phase_of(repeats_dir(study), recorder) == "rerun"  # not the folder's name (s-repeats)
    with pytest.raises(ValueError, match="is not one of"):
        MlflowTrials(ParentRun("http://127.0.0.1:1", "0", "e", "r"), recorder, "s-repeats")


@pytest.mark.slow  # a study of its own: 25 s (CI runs it: .ci/run)
def test_a_server_that_stops_answering_costs_a_warning_not_the_study(ray_cluster, tmp_path, capsys, monkeypatch):
    """The server is killed when the first epoch reaches the MLflow callback: the study still ends with all its
    trials in Parquet, and the loss is one warning line (MLflow's client retries are cut to none here, so the
    test does not wait minutes for them)."""
    from study.tuning.mlflow_trials import MlflowTrials

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    folder = tmp_path / "server"
    folder.mkdir()
    with serve_mlflow(folder) as (url, server):
        original = MlflowTrials._result

        def kill_then_log(self, trial, result):
            stop_server(server, signal.SIGKILL)
            return original(self, trial, result)

        monkeypatch.setattr(MlflowTrials, "_result", kill_then_log)
        argv = ["--storage", str(tmp_path), "--name", "k", *TINY, "--space", "gradnorm", "--samples", "2",
                "--epochs", "2", "--max-concurrent", "1", "--mlflow", url]
        assert run_main(argv) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: mlflow:")]
    assert len(warnings) == 1 and f"the tracking server at {url} stopped answering" in warnings[0], err[-3000:]
    trials = pd.read_parquet(tmp_path / "k" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "k" / "epochs.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"finished"} and len(epochs) == 4


@pytest.mark.slow  # a study of its own: 25 s (CI runs it: .ci/run)
def test_resume_continues_the_same_parent_and_child_runs(ray_cluster, mlflow_server, tmp_path):
    """SIGKILL the driver once its first trial's first epoch is in MLflow, then --resume: one parent run (the same
    one), one child run per trial, and the interrupted trial's epochs all in its first run."""
    study_args = ["--storage", str(tmp_path), "--name", "r", *TINY, "--space", "gradnorm", "--samples", "2",
                  "--epochs", "3", "--max-concurrent", "1", "--mlflow", mlflow_server, "--mlflow-experiment", "resume"]
    address = ray_cluster.get_runtime_context().gcs_address
    driver = subprocess.Popen([sys.executable, "-m", "study.run", "--address", address, *study_args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    first: dict[str, str] = {}  # trial id -> run id, of the first driver
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None and not first:
            experiment = client.get_experiment_by_name("resume")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            for run in runs:
                if "mtl.trial_id" in run.data.tags and client.get_metric_history(run.info.run_id, "val.objective"):
                    first[run.data.tags["mtl.trial_id"]] = run.info.run_id
            time.sleep(0.3)
        assert driver.poll() is None, "the study ended before it could be interrupted"
    finally:
        driver.kill()
        driver.wait()
    assert first, "no epoch reached MLflow in time"
    parent_before = json.loads((tmp_path / "r" / "mlflow.json").read_text())["run_id"]

    assert run_main([*study_args, "--resume"]) == 0
    assert json.loads((tmp_path / "r" / "mlflow.json").read_text())["run_id"] == parent_before
    experiment = client.get_experiment_by_name("resume")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.run_id == parent_before and parent.info.status == "FINISHED"
    children = {r.data.tags["mtl.trial_id"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    trials = pd.read_parquet(tmp_path / "r" / "trials.parquet")
    assert len(runs) == 1 + len(children) and set(children) == set(trials["trial_id"]) and len(trials) == 2
    for trial_id, run_id in first.items():  # the interrupted trial went on in the run it began in
        assert children[trial_id].info.run_id == run_id
        steps = {h.step for h in client.get_metric_history(run_id, "val.objective")}
        assert steps == {1, 2, 3}
    for child in children.values():
        assert child.data.tags["mtl.phase"] == "search" and child.info.status == "FINISHED"


def test_a_parent_run_the_command_leaves_unfinished_is_marked_not_left_running(mlflow_server, tmp_path):
    """What study.run does on its way out of an error (FAILED) or Ctrl-C (KILLED): the parent run it opened and did
    not finish is marked so; a finished one is never touched."""
    from types import SimpleNamespace

    from study.tracking.mlflow_study import SETTINGS_PARAMS, begin_parent, end_unfinished, finish_parent

    settings = SimpleNamespace(mlflow=mlflow_server, mlflow_experiment="unfinished", argv=["--name", "u"], config={},
                               **dict.fromkeys(SETTINGS_PARAMS))
    study = tmp_path / "u"
    study.mkdir()
    (study / "manifest.json").write_text("{}")
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    parent = begin_parent(study, settings, "fingerprint")
    assert client.get_run(parent.run_id).info.status == "RUNNING"
    end_unfinished("FAILED")
    assert client.get_run(parent.run_id).info.status == "FAILED"
    assert begin_parent(study, settings, "fingerprint") == parent  # a --resume reopens it
    assert client.get_run(parent.run_id).info.status == "RUNNING"
    finish_parent(study)
    end_unfinished("KILLED")
    assert client.get_run(parent.run_id).info.status == "FINISHED"
