"""The study end to end, through the CLI, on a real local Ray cluster (shared by the session)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from study.run import main as run_main
from tests.conftest import TINY


def run(tmp_path: Path, name: str, *args: str) -> int:
    return run_main(["--storage", str(tmp_path), "--name", name, *TINY, *args])


def test_two_trial_study_writes_parquet_tables(ray_cluster, tmp_path, capsys):
    # warm-up 1 step: GradNorm is active from the second of the run's 4 steps, so its weights move
    assert run(tmp_path, "s", "--space", "gradnorm", "--samples", "2", "--epochs", "2",
               "--set", "balancer.warmup_steps=1") == 0
    out = capsys.readouterr().out
    assert "best trials:" in out and "trials.parquet" in out
    trials = pd.read_parquet(tmp_path / "s" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "s" / "epochs.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}
    assert len(epochs) == 4 and sorted(epochs["epoch"]) == [1, 1, 2, 2]
    for column in ("balancer.alpha", "balancer.weight_lr", "optim.lr", "model.cls_hidden", "best.val.map",
                   "best.val.view_accuracy", "last.weight.det", "eff.gflops", "eff.params_total", "time.train_s"):
        assert column in trials, column
    assert trials["balancer.alpha"].nunique() == 2  # the searcher suggested two different alphas
    assert set(trials["balancer.name"]) == {"gradnorm"} and set(trials["space"]) == {"gradnorm"}
    for column in ("loss.det", "loss.view", "weight.det", "weight.view", "grad.cosine", "val.map50", "lr",
                   "time.epoch_s"):
        assert column in epochs, column
    # GradNorm keeps sum(w) = T = 2, so the epoch means of the weights sum to 2 as well
    assert ((epochs["weight.det"] + epochs["weight.view"]) - 2).abs().max() < 1e-4
    assert (epochs["weight.det"] - 1).abs().max() > 1e-3  # ... and GradNorm did move them
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["dataset_fingerprint"] and manifest["versions"]["ray"] and manifest["base_config"]


def test_trial_that_raises_is_recorded_and_the_study_finishes(ray_cluster, tmp_path, monkeypatch):
    from tests import faults

    faults.use_in_gradnorm_space(monkeypatch, faults.RaiseOnSecondStep)  # a balancer that raises in its 2nd step
    assert run(tmp_path, "f", "--space", "gradnorm", "--samples", "1", "--epochs", "2") == 0
    trials = pd.read_parquet(tmp_path / "f" / "trials.parquet")
    assert list(trials["status"]) == ["error"]
    assert "RuntimeError: injected failure" in trials.loc[0, "error"]


def test_existing_study_is_not_overwritten(ray_cluster, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "trials.parquet").write_bytes(b"precious")
    from study.cli import run_cli

    assert run_cli(run_main, ["--storage", str(tmp_path), "--name", "taken", *TINY]) == 2
    assert "already holds a study" in capsys.readouterr().err
    assert (tmp_path / "taken" / "trials.parquet").read_bytes() == b"precious"


def test_resume_after_the_driver_is_killed(ray_cluster, tmp_path):
    """SIGKILL the driver once a trial has reported, then --resume: the study completes, nothing lost."""
    address = ray_cluster.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "study.run", "--address", address, "--storage", str(tmp_path), "--name", "r",
           "--space", "gradnorm", "--samples", "3", "--epochs", "3", "--max-concurrent", "1", *TINY]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    epochs_file = tmp_path / "r" / "epochs.parquet"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if epochs_file.exists() and len(pd.read_parquet(epochs_file)) >= 2:
            break
        time.sleep(0.5)
    assert driver.poll() is None, "the study ended before it could be interrupted"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = pd.read_parquet(epochs_file)  # readable after a kill: writes are atomic
    assert len(before) >= 2

    assert run(tmp_path, "r", "--resume", "--space", "gradnorm", "--samples", "3", "--epochs", "3",
               "--max-concurrent", "1") == 0
    trials = pd.read_parquet(tmp_path / "r" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "r" / "epochs.parquet")
    assert len(trials) == 3 and set(trials["status"]) == {"finished"}
    assert len(epochs) == 9
    # the interrupted trial continued from its checkpoint: its earlier epochs are kept, not re-run from scratch
    first = before["trial_id"].iloc[0]
    assert set(epochs.loc[epochs["trial_id"] == first, "epoch"]) == {1, 2, 3}


@pytest.mark.parametrize("argv", [["--space", "nope"], ["--scheduler", "asha", "--objective", "multi"],
                                  ["--samples", "0"], ["--set", "optim.lr=-1"],
                                  ["--space", "compare", "--samples", "7"],  # 10 methods: a multiple of 10
                                  ["--space", "compare", "--methods", "dual,shared/nope"],
                                  ["--space", "compare", "--methods", "shared@9/gradnorm"]])  # p4: 0..4 units
def test_bad_study_arguments_give_one_line(tmp_path, capsys, argv):
    from study.cli import run_cli

    assert run_cli(run_main, ["--storage", str(tmp_path), "--name", "x", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (tmp_path / "x").exists()


def test_repeat_best_reruns_the_best_config_with_new_seeds(ray_cluster, tmp_path):
    assert run(tmp_path, "rb", "--space", "gradnorm", "--samples", "2", "--epochs", "1", "--repeat-best", "1",
               "--seeds", "2") == 0
    trials = pd.read_parquet(tmp_path / "rb" / "trials.parquet")
    originals = trials[trials["repeat_of"].fillna("") == ""]
    repeats = trials[trials["repeat_of"].fillna("") != ""]
    assert len(originals) == 2 and len(repeats) == 2
    best = originals.sort_values("best.val.objective", ascending=False).iloc[0]  # one method: its best
    assert set(repeats["repeat_of"]) == {best["trial_id"]}
    assert repeats["train.seed"].nunique() == 2 and best["train.seed"] not in set(repeats["train.seed"])
    assert (repeats["balancer.alpha"] == best["balancer.alpha"]).all()


def test_each_trial_keeps_its_best_epochs_checkpoint_and_optuna_gets_that_epoch(ray_cluster, tmp_path):
    """3 epochs, so pruning has something to do: the best epoch's checkpoint and the latest survive, and
    optuna.db holds each trial's best-epoch value, the one trials.parquet reports as best.*."""
    import optuna
    import torch

    from study.store.checkpoints import trial_checkpoint

    assert run(tmp_path, "k", "--space", "gradnorm", "--samples", "2", "--epochs", "3") == 0
    trials = pd.read_parquet(tmp_path / "k" / "trials.parquet")
    assert set(trials["status"]) == {"finished"}
    study = optuna.load_study(study_name="shared/gradnorm", storage=f"sqlite:///{tmp_path / 'k' / 'optuna.db'}")
    told = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    for _, row in trials.iterrows():
        folder = tmp_path / "k" / f"trial_{row['trial_id']}"  # short names (study/tuning/search.py: trial_folder)
        kept = sorted(folder.glob("checkpoint_*/checkpoint.pt"))
        epochs = {int(torch.load(p, map_location="cpu", weights_only=True, mmap=True)["epoch"]) for p in kept}
        assert epochs == {int(row["best_epoch"]), 3} and len(kept) == len(epochs)
        best = trial_checkpoint(tmp_path / "k", row["trial_id"], int(row["best_epoch"]))
        assert torch.load(best, map_location="cpu", weights_only=True, mmap=True)["epoch"] == row["best_epoch"]
        assert told[row["trial_id"]].value == pytest.approx(row["best.val.objective"])
        assert told[row["trial_id"]].user_attrs["best_epoch"] == row["best_epoch"]


@pytest.mark.slow  # one trial per method (ten today): about two minutes on 2 shared cores
def test_compare_runs_one_search_per_method_with_equal_budgets(ray_cluster, tmp_path, capsys):
    import optuna

    from search_spaces import registry

    one_each = str(len(registry.methods("compare")))  # a new balancer file is one more method
    assert run(tmp_path, "c", "--space", "compare", "--samples", one_each, "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert "each method its best" in out
    trials = pd.read_parquet(tmp_path / "c" / "trials.parquet")
    methods = registry.methods("compare")
    assert sorted(zip(trials["arch"], trials["balancer.name"], strict=True)) == \
        sorted((m["arch"], m["balancer.name"]) for m in methods)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'c' / 'optuna.db'}")
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == sorted(registry.method_name(m["arch"], m["balancer.name"]) for m in methods)
    for name in names:
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 1
