"""The held-out headline: ``study.run --repeat-best K --seeds N --test`` end to end, its statistics by hand,
and the report's headline section reading headline.parquet and naming its split."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.analysis.headline import headline, read_heldout
from study.analysis.loading import load_study
from study.analysis.report import build_report
from study.analysis.stats import t_quantile_two_sided
from study.analysis.summary import takeaways
from study.cli import run_cli
from study.heldout.costs import COSTS
from study.heldout.reruns import headline_rows, headline_table
from study.heldout.scoring import evaluate_state
from study.run import main as run_main
from study.store.checkpoints import load_checkpoint
from study.store.trials import write_atomic
from tests.conftest import TINY
from tests.test_analysis_helpers import write_study

METHODS = ["shared/gradnorm", "dual", "det_only", "cls_only"]
SCORES = ["map50", "map", "view_accuracy", "view_macro_f1"]


def test_headline_in_one_command_on_the_synthetic_default(ray_cluster, tmp_path, capsys):
    argv = ["--storage", str(tmp_path), "--name", "h", *TINY, "--space", "compare", "--methods", ",".join(METHODS),
            "--samples", "4", "--epochs", "1", "--repeat-best", "1", "--seeds", "2", "--test"]
    assert run_main(argv) == 0
    out = capsys.readouterr().out
    study = tmp_path / "h"
    assert "held-out headline: test split" in out and str(study / "headline.parquet") in out
    # the validation table printed after it says so, and points back to the held-out scores
    assert "validation split, the one they were selected on (held-out scores: the headline above)" in out

    head = pd.read_parquet(study / "headline.parquet").set_index("method")
    assert sorted(head.index) == sorted(METHODS)
    assert (head["n_seeds"] == 2).all() and (head["n_configs"] == 1).all()
    assert set(head["split"]) == {"test"} and set(head["split_by"]) == {"folders"}
    for m in SCORES:
        assert {f"test.{m}.mean", f"test.{m}.ci95"} <= set(head.columns)
    # single-task methods leave the other task's cells empty; every other mean is a score in [0, 1]
    assert head.loc["det_only", ["test.view_accuracy.mean", "test.view_macro_f1.mean"]].isna().all()
    assert head.loc["cls_only", ["test.map50.mean", "test.map.mean"]].isna().all()
    for method in ("shared/gradnorm", "dual"):
        assert head.loc[method, [f"test.{m}.mean" for m in SCORES]].between(0, 1).all()

    # the statistics are over the re-runs scored on the test split, each its best epoch's checkpoint
    runs = pd.read_parquet(study / "test_runs.parquet")
    trials = pd.read_parquet(study / "trials.parquet")
    assert len(runs) == 8 and set(runs["trial_id"]) == set(trials.loc[trials["repeat_of"] != "", "trial_id"])
    for method, group in runs.groupby("method"):
        col = "test.view_accuracy" if method != "det_only" else "test.map50"
        values = group[col].to_numpy(dtype=float)
        assert head.loc[method, f"{col}.mean"] == pytest.approx(values.mean())
        half = t_quantile_two_sided(0.95, 1) * values.std(ddof=1) / math.sqrt(2)
        assert head.loc[method, f"{col}.ci95"] == pytest.approx(half, abs=1e-12)
    one = runs.iloc[0]
    again = evaluate_state(load_checkpoint(one["checkpoint"]), "test", seed=0, device="cpu")
    assert again["metrics"] == pytest.approx({k: one[k] for k in again["metrics"]}, nan_ok=True)
    assert int(load_checkpoint(one["checkpoint"])["epoch"]) == int(one["best_epoch"])

    # costs: each method's best config measured alone on all the node's CPUs; ratios to dual
    for c in COSTS:
        assert (head[c] > 0).all(), c
        assert head.loc["dual", f"{c}.ratio_dual"] == pytest.approx(1.0)
        assert head[f"{c}.ratio_dual"].notna().all()
    assert (head["cost.threads"] == 2).all()  # the session's Ray cluster has 2 CPUs: the task held both
    assert head.loc["cls_only", "cost.params"] < head.loc["dual", "cost.params"]
    best = trials[trials["repeat_of"] == ""].set_index("trial_id")
    assert set(head["cost.trial_id"]) <= set(best.index)
    assert trials["time.train_s"].notna().all()  # the trials' own seconds stay in trials.parquet

    page = build_report(load_study(study)).html
    assert "Headline comparison (held-out)" in page and "split by folders" in page and "headline.parquet" in page
    assert "the interval covers seeds only, on one split" in page and "Verdict (paired, held-out)" in page
    assert set(head["interval_unit"]) == {"seed"} and (head["n_runs"] == 2).all() and (head["n_folds"] == 1).all()
    assert "interval covers training randomness only" in out  # the verdict's pairs are seeds here

    # --resume of the finished study: the repeat phase restores its experiment (no new re-run, no new seed)
    # and the held-out phase keeps what it scored
    before = {name: pd.read_parquet(study / name) for name in ("test_runs.parquet", "headline.parquet")}
    assert run_main([*argv, "--resume"]) == 0
    assert "repeat-best: resuming h-repeats" in capsys.readouterr().out
    assert len(pd.read_parquet(study / "trials.parquet")) == len(trials)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(pd.read_parquet(study / name), frame)
    # --overwrite replaces the study and its re-runs' experiment with it
    assert (tmp_path / "h-repeats").is_dir()
    from study.store.folder import prepare_folder

    prepare_folder(str(tmp_path), "h", "gradnorm", resume=False, overwrite=True)
    assert not (tmp_path / "h-repeats").exists() and not any((tmp_path / "h").iterdir())


def test_test_without_repeat_best_is_one_line_and_exit_2(tmp_path, capsys):
    code = run_cli(run_main, ["--storage", str(tmp_path), "--name", "x", *TINY, "--test"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--test scores the --repeat-best re-runs" in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_a_rerun_whose_best_checkpoint_is_gone_is_not_scored(tmp_path):
    """Held-out scoring never scores another epoch than the best one it records (trial_checkpoint strict)."""
    import torch

    from study.store.checkpoints import trial_checkpoint

    for epoch in (1, 2):  # a trial folder holding epochs 1 and 2; its best, epoch 3, was deleted
        folder = tmp_path / "s" / "train_trial_abc_1" / f"checkpoint_{epoch - 1:06d}"
        folder.mkdir(parents=True)
        torch.save({"epoch": epoch}, folder / "checkpoint.pt")
    assert trial_checkpoint(tmp_path / "s", "abc", 3, strict=True) is None
    assert trial_checkpoint(tmp_path / "s", "abc", 1, strict=True).parent.name == "checkpoint_000000"
    assert trial_checkpoint(tmp_path / "s", "missing", 1, strict=True) is None


def test_headline_rows_by_hand():
    chosen = pd.DataFrame({"trial_id": ["g", "d", "b"], "method": ["shared/gradnorm", "dual", "det_only"]})
    runs = pd.DataFrame({
        "method": ["shared/gradnorm"] * 3 + ["dual"] * 2 + ["det_only"],
        "test.map50": [0.4, 0.5, 0.6, 0.3, 0.5, 0.7],
        "test.view_accuracy": [0.8, 0.8, 0.8, 0.6, 0.7, math.nan],
    })
    costs = pd.DataFrame({"method": ["shared/gradnorm", "dual", "det_only"], "cost.trial_id": ["g", "d", "b"],
                          **{c: [1.0, 4.0, 2.0] for c in COSTS}, "cost.device": "cpu", "cost.threads": 2.0,
                          "cost.batch": 16.0, "cost.imgsz": 64.0, "cost.host": "h"})
    runs["train.seed"] = [1000, 1001, 1002, 1000, 1001, 1000]
    rows = {r["method"]: r for r in headline_rows(chosen, runs, costs, "patient", 7, "data.yaml", leaks=True)}
    g = rows["shared/gradnorm"]
    assert g["n_seeds"] == 3 and g["n_runs"] == 3 and g["test.map50.mean"] == pytest.approx(0.5)
    assert g["interval_unit"] == "seed" and g["split_leaks_patients"] is True
    assert g["test.map50.ci95"] == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3))  # t(0.975, df=2)
    assert g["test.view_accuracy.ci95"] == pytest.approx(0.0)
    assert rows["dual"]["test.map50.ci95"] == pytest.approx(12.706204736174696 * math.sqrt(0.02) / math.sqrt(2))
    assert rows["det_only"]["test.view_accuracy.mean"] is None  # a single-task method's other task: empty
    assert rows["det_only"]["test.map50.ci95"] is None  # one run: no interval
    assert g["cost.train_step_ms.ratio_dual"] == pytest.approx(0.25) and rows["dual"]["cost.params.ratio_dual"] == 1
    assert list(rows) == ["shared/gradnorm", "dual", "det_only"]  # the report's fixed method order


def test_report_reads_headline_parquet_and_states_the_split(tmp_path):
    folder = write_study(tmp_path / "s")
    before = build_report(load_study(folder))
    assert "validation split" in before.html and "Headline comparison (held-out)" not in before.html
    chosen = pd.DataFrame({"trial_id": ["g2", "d1"], "method": ["shared/gradnorm", "dual"]})
    runs = pd.DataFrame({"method": ["shared/gradnorm"] * 2 + ["dual"] * 2, "test.map50": [0.41, 0.43, 0.2, 0.3],
                         "train.seed": [1000, 1001] * 2,
                         "test.map": [0.2] * 4, "test.view_accuracy": [0.7] * 4, "test.view_macro_f1": [0.6] * 4})
    costs = pd.DataFrame({"method": ["shared/gradnorm", "dual"], "cost.trial_id": ["g2", "d1"],
                          **{c: [2.0, 4.0] for c in COSTS}, "cost.device": "cpu", "cost.threads": 2.0,
                          "cost.batch": 16.0, "cost.imgsz": 64.0, "cost.host": "h"})
    write_atomic(headline_table(headline_rows(chosen, runs, costs, "patient", 3, "/d/data.yaml")),
                 folder / "headline.parquet")
    write_atomic(__import__("pyarrow").Table.from_pandas(runs), folder / "test_runs.parquet")
    report = build_report(load_study(folder))
    page = report.html
    assert "Headline comparison (held-out)" in page
    assert "held-out patients (a seeded split by patient, seed 3" in page and "/d/data.yaml" in page
    assert "0.420 ± 0.127" in page and "2.00 (×0.500)" in page  # 12.71 · 0.01414 / √2 = 0.127; cost 2 vs dual's 4
    assert "Validation split (selection; optimistic)" in page
    # the summary leads with the held-out scores; the validation sentences after it say what they are
    lead, *rest = takeaways(load_study(folder), headline(load_study(folder).trials), read_heldout(folder))
    assert lead.startswith("Held-out, on the test split of /d/data.yaml: held-out patients")
    assert "shared/gradnorm mAP@0.5 0.420 ± 0.127" in lead and "(n=2 re-runs)" in lead
    assert any(r.startswith("On the validation split (selection; optimistic): GradNorm (shared) vs dual") for r in rest)
    assert "The first take-away is held-out" in page
    assert {"headline", "headline_val"} <= set(report.figures)
    assert page.count('class="plotly-graph-div"') == before.html.count('class="plotly-graph-div"') + 1


def test_shared_dataset_patient_split(ray_cluster, shared_dataset, tmp_path, capsys):
    """The one command on the real dataset with held-out patients (tiny: 64 px, one epoch).

    What the test can know without trusting the code under test: the frames scored are exactly the
    test split's (its size, its clips counted from the file names), whose patients (the file name before
    the first '-') have no frame in train or val; the trials validated on that same split's val frames
    (``study.evaluate --split val`` on a re-run's checkpoint gives back the numbers the trial reported);
    each scored checkpoint is its re-run's best epoch; ``study.evaluate --split test`` on it gives back
    the scores of test_runs.parquet; the headline's mean and interval are the runs' by hand."""
    import json

    from study.evaluate import main as evaluate_main
    from trainables.config import TrialConfig
    from trainables.data.loader import load_data

    argv = ["--storage", str(tmp_path), "--name", "p", "--space", "compare", "--methods", "shared/gradnorm",
            "--samples", "1", "--epochs", "1", "--imgsz", "64", "--repeat-best", "1", "--seeds", "2", "--test",
            "--split", "patient", "--data", str(shared_dataset), "--set", "train.interference_batches=1",
            "--set", "train.bn_recalibration_batches=1"]
    assert run_main(argv) == 0
    study = tmp_path / "p"
    head = pd.read_parquet(study / "headline.parquet")
    runs = pd.read_parquet(study / "test_runs.parquet")
    trials = pd.read_parquet(study / "trials.parquet").set_index("trial_id")
    seed = json.loads((study / "manifest.json").read_text())["seeds"]["study"]
    assert list(head["method"]) == ["shared/gradnorm"] and list(head["split_by"]) == ["patient"]
    assert int(head.loc[0, "split_seed"]) == seed and set(runs["split_seed"]) == {seed}
    assert set(runs["split_by"]) == {"patient"} and set(runs["data"]) == {str(shared_dataset)}

    # the split, loaded again from the checkpoint's own data config and the study's seed
    state = load_checkpoint(runs.loc[0, "checkpoint"])
    data = load_data(TrialConfig.from_flat(dict(state["config"])).data, seed=seed)
    names = {k: [Path(f).name for f in data.files[v]] for k, v in data.splits.items()}
    patients = {k: {n.split("-")[0] for n in v} for k, v in names.items()}
    assert patients["test"] and not patients["test"] & (patients["train"] | patients["val"])
    assert sorted(np.concatenate(list(data.splits.values()))) == list(range(len(data.files)))  # each frame once
    clips = {k: len({n.rsplit("-", 1)[0] for n in v}) for k, v in names.items()}

    # two re-runs (seeds 1000, 1001 of the searched trial), each scored on every test frame, at its best epoch
    assert len(runs) == 2 and sorted(runs["train.seed"]) == [seed + 1000, seed + 1001]
    assert set(runs["repeat_of"]) == {str(trials.index[trials["repeat_of"].fillna("") == ""][0])}
    assert (runs["images"] == len(data.splits["test"])).all() and (runs["test.n_clips"] == clips["test"]).all()
    for _, run in runs.iterrows():
        path = Path(run["checkpoint"])
        assert path.parent.parent.name == f"trial_{run['trial_id']}" and path.parent.parent.parent.name == "p-repeats"
        assert int(load_checkpoint(path)["epoch"]) == int(run["best_epoch"]) == int(trials.loc[run["trial_id"],
                                                                                              "best_epoch"])
    jets = [c for c in runs if c.startswith("test.jet_")]  # jet present per valve: below
    scores = runs[[c for c in runs if c.startswith("test.") and not c.split(".")[-1].startswith("n_")
                   and c not in jets]]  # no counts
    assert (runs["test.n_mixed_clips"] <= runs["test.n_clips"]).all()
    assert ((scores >= 0) & (scores <= 1)).all().all()
    # jet present per valve, per clip and per study: each level's four counts are its units, the positives those
    # whose frames have a box of the valve (rebuilt here from the data); rates and thresholds in [0, 1] where defined
    position = {int(i): k for k, i in enumerate(data.splits["test"])}  # frame -> its place in names["test"]
    units = {"clip": clips["test"], "study": len(patients["test"])}
    for c, valve in enumerate(data.names):
        with_jet = [names["test"][position[int(i)]] for i in data.boxes[data.boxes[:, 1] == c, 0] if int(i) in position]
        positive = {"clip": len({n.rsplit("-", 1)[0] for n in with_jet}),
                    "study": len({n.split("-")[0] for n in with_jet})}
        for _, run in runs[runs[f"test.jet_threshold_{valve}"].notna()].iterrows():
            for level in ("clip", "study"):
                counts = [run[f"test.jet_{level}_{k}_{valve}"] for k in ("tp", "fp", "tn", "fn")]
                assert sum(counts) == units[level] and counts[0] + counts[3] == positive[level], (valve, level)
    rates = runs[[c for c in jets if not re.search(r"_(tp|fp|tn|fn)_", c)]]
    assert ((rates >= 0) & (rates <= 1) | rates.isna()).all().all()
    assert runs["test.view_accuracy"].gt(0).all()  # a view head, scored: 3 views, 260 frames

    # the CLI scores the same checkpoint again: the trial's own val numbers, and test_runs.parquet's test numbers
    one = runs.iloc[0]
    capsys.readouterr()
    for split in ("val", "test"):
        assert evaluate_main([one["checkpoint"], "--split", split, "--device", "cpu",
                              "--json", str(tmp_path / f"{split}.json")]) == 0
    val = json.loads((tmp_path / "val.json").read_text())
    test = json.loads((tmp_path / "test.json").read_text())
    assert val["split_seed"] == test["split_seed"] == seed  # the checkpoint's own data.split_seed
    assert val["images"] == len(data.splits["val"]) and test["images"] == len(data.splits["test"])
    reported = trials.loc[one["trial_id"]]
    assert val["metrics"]["val.n_clips"] == clips["val"]
    for key in ("map50", "map", "view_accuracy", "view_macro_f1", "n_clips"):
        assert val["metrics"][f"val.{key}"] == pytest.approx(reported[f"best.val.{key}"], abs=1e-9), key
    assert test["metrics"] == pytest.approx({k: float(one[k]) for k in test["metrics"]}, abs=1e-12, nan_ok=True)

    # the headline: two runs, no leak, each score's mean and t(0.975, df=1) * sd / sqrt(2) by hand
    assert int(head.loc[0, "n_seeds"]) == 2 and int(head.loc[0, "n_runs"]) == 2
    assert not head.loc[0, "split_leaks_patients"]  # by patient: no test patient trained on
    for m in SCORES:
        a, b = runs[f"test.{m}"]
        assert head.loc[0, f"test.{m}.mean"] == pytest.approx((a + b) / 2, abs=1e-12), m
        assert head.loc[0, f"test.{m}.ci95"] == pytest.approx(12.706204736174696 * abs(a - b) / 2, rel=1e-9), m
    assert head.loc[0, "cost.train_step_ms"] > 0 and pd.isna(head.loc[0, "cost.train_step_ms.ratio_dual"])


def test_every_rerun_is_recorded_with_its_status_and_a_diverged_one_is_scored_at_its_best_epoch(tmp_path, capsys):
    """score_reruns on a study folder holding four re-runs of one chosen configuration: finished; diverged after a
    scored epoch (scored there); diverged before any (unscored); errored after a scored epoch whose checkpoint is
    gone (unscored). Every one has its row; the headline counts three failed and two scored."""
    from study.heldout.reruns import score_reruns
    from study.store.checkpoints import save_checkpoint
    from study.store.trials import trial_row, trials_table
    from tests.test_evaluate import tiny_checkpoint

    path, state, history = tiny_checkpoint(tmp_path / "ckpt")
    scored = {**history[-1], "val.objective": 0.5}
    diverged = {"epoch": 2, "status": "diverged", "val.objective": math.nan}
    epochs = {"r1": [scored], "r2": [scored, diverged], "r3": [{**diverged, "epoch": 1}], "r4": [scored]}
    status = {"r1": "finished", "r2": "diverged", "r3": "diverged", "r4": "error"}
    study = tmp_path / "s"
    rows = [trial_row(t, "gradnorm", {**state["config"], "train.seed": 1000 + i}, epochs[t], status[t], repeat_of="c1")
            for i, t in enumerate(epochs)]
    write_atomic(trials_table(rows), study / "trials.parquet")
    for t in ("r1", "r2"):  # r4's checkpoint of its best epoch is gone
        save_checkpoint(state, study / f"trial_{t}" / "checkpoint_000000" / "checkpoint.pt")
    chosen = pd.DataFrame({"trial_id": ["c1"], "method": ["shared/gradnorm"]})
    seed = state["config"]["train.seed"]  # the checkpoint records no data.split_seed: its study's seed deals it
    runs = score_reruns(study, chosen, study_seed=seed).set_index("trial_id")
    assert list(runs.index) == ["r1", "r2", "r3", "r4"]
    assert list(runs["status"]) == ["finished", "diverged", "diverged", "error"]
    assert list(runs["scored"]) == [True, True, False, False]
    assert runs.loc["r3", "reason"] == "no epoch with a validation score"
    assert runs.loc["r4", "reason"] == "its best epoch's (1) checkpoint is gone"
    alone = evaluate_state(load_checkpoint(path), "test", device="cpu")["metrics"]["test.view_accuracy"]
    assert runs.loc["r2", "test.view_accuracy"] == pytest.approx(alone) and runs.loc["r2", "best_epoch"] == 1
    assert math.isnan(runs.loc["r3", "test.view_accuracy"])
    err = capsys.readouterr().err
    assert "re-run r3 of c1 (diverged): no epoch with a validation score; not scored, counted as failed" in err
    head = headline_rows(chosen, runs.reset_index(), pd.DataFrame(), "folders", 0, "synthetic")[0]
    assert (head["n_runs"], head["n_failed"], head["n_seeds"]) == (2, 3, 2)
    assert head["test.view_accuracy.mean"] == pytest.approx(runs.loc[["r1", "r2"], "test.view_accuracy"].mean())
