"""``python -m study.tuned``: each method's searched configuration against its default, paired by outer fold, and
what each fold's search chose (with the edge of its range)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
from scipy import stats

from study.cli import run_cli
from study.errors import UsageError
from study.heldout.chosen import CHOSEN_FILE, position
from study.heldout.tuning_gain import TUNING_GAIN_FILE, same_folds, tuning_rows
from study.publish import main as publish_main
from study.tuned import main as tuned_main
from tests.conftest import TINY

FOLDS = pd.DataFrame({"patient": [f"p{i}" for i in range(12)], "fold": [i % 3 for i in range(12)]})


def runs(method: str, scores: dict[int, list[float]]) -> pd.DataFrame:
    """test_runs rows of ``method``: fold -> its seeds' test.map50 (view accuracy a fixed 0.7)."""
    return pd.DataFrame([{"method": method, "fold": f, "train.seed": 1000 + s, "status": "finished", "scored": True,
                          "test.map50": v, "test.view_accuracy": 0.7}
                         for f, values in scores.items() for s, v in enumerate(values)])


def test_the_gain_of_tuning_is_the_fold_paired_difference_with_the_corrected_interval():
    searched = runs("shared/static", {0: [0.40, 0.44], 1: [0.30, 0.30], 2: [0.52, 0.48]})
    default = runs("shared/static", {0: [0.30, 0.30], 1: [0.31, 0.29], 2: [0.40, 0.40]})
    other = runs("dual", {0: [0.5], 1: [0.5], 2: [0.5]})  # in one study only: not compared
    rows = tuning_rows(pd.concat([searched, other]), default, FOLDS)
    row = next(r for r in rows if r["metric"] == "map50")
    assert {(r["method_a"], r["method_b"]) for r in rows} == {("shared/static searched", "shared/static default")}
    # by hand: fold differences 0.42 - 0.30, 0.30 - 0.30, 0.50 - 0.40; 3 folds of 4 patients: rho = 4/8
    d = [0.12, 0.0, 0.10]
    mean, sd = sum(d) / 3, math.sqrt(sum((x - sum(d) / 3) ** 2 for x in d) / 2)
    half = stats.t.ppf(0.975, 2) * sd * math.sqrt(1 / 3 + 0.5)
    assert row["diff_mean"] == pytest.approx(mean) and row["diff_ci95"] == pytest.approx(half)
    assert row["n_pairs"] == 3 and row["correction"] == "nadeau-bengio" and row["test_train_ratio"] == 0.5
    assert row["conclusion"] == "not resolved"  # [-0.11, 0.26] holds 0 and reaches past the 0.05 margin
    view = next(r for r in rows if r["metric"] == "view_accuracy")
    assert view["diff_mean"] == pytest.approx(0.0) and view["diff_ci95"] == 0.0  # no spread: not a test
    assert not any(r["family"] == "costs" for r in rows)


def test_studies_over_other_folds_are_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    FOLDS.to_parquet(a / "folds.parquet")
    FOLDS.assign(fold=(FOLDS["fold"] + 1) % 3).to_parquet(b / "folds.parquet")
    with pytest.raises(UsageError, match=r"deal 12 patients to different folds"):
        same_folds(a, b)
    FOLDS.iloc[:-1].to_parquet(b / "folds.parquet")
    with pytest.raises(UsageError, match="hold different patients"):
        same_folds(a, b)
    FOLDS.to_parquet(b / "folds.parquet")
    assert same_folds(a, b).equals(FOLDS)


def test_a_value_s_place_in_its_range_is_on_the_range_s_scale():
    assert position(1e-3, 1e-4, 1e-2, log=True) == pytest.approx(0.5)  # the middle decade
    assert position(0.75, 0.0, 3.0, log=False) == pytest.approx(0.25)
    assert position(2.0, 2.0, 2.0, log=False) == 0.5


@pytest.fixture(scope="module")
def two_studies(ray_cluster, tmp_path_factory) -> tuple[Path, Path]:
    """A searched and a default two-fold study of shared/static vs dual over the same synthetic patients."""
    from study.run import main as run_main

    storage = tmp_path_factory.mktemp("tuned")
    common = ["--storage", str(storage), *TINY, "--set", "train.bn_recalibration_batches=1", "--space", "compare",
              "--methods", "shared/static,dual", "--epochs", "1", "--folds", "2", "--seeds", "1", "--split", "patient"]
    assert run_main([*common, "--name", "searched", "--samples", "4"]) == 0
    assert run_main([*common, "--name", "default", "--samples", "0"]) == 0
    return storage / "searched", storage / "default"


@pytest.mark.slow
def test_tuned_reads_the_searches_record_and_the_published_folder_gives_the_same(two_studies, tmp_path, capsys):
    searched, default = two_studies
    assert run_cli(tuned_main, [str(searched), str(default)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "shared/static searched vs shared/static default (2 folds)" in out
    gain = pd.read_parquet(searched / TUNING_GAIN_FILE)
    assert set(gain["method_a"]) == {"shared/static searched", "dual searched"}
    assert set(gain.loc[gain["metric"].isin(["map50", "view_accuracy"]), "n_pairs"]) == {2}
    chosen = pd.read_parquet(searched / CHOSEN_FILE)
    runs_ = pd.read_parquet(searched / "test_runs.parquet")
    assert set(zip(chosen["fold"], chosen["method"], chosen["trial_id"], strict=True)) == set(
        zip(runs_["fold"], runs_["method"], runs_["repeat_of"], strict=True))
    # each value is the one the fold's searcher drew for that Tune trial, inside the range it drew from
    for r in chosen.itertuples():
        study = optuna.load_study(study_name=r.method, storage=f"sqlite:///{searched}/fold-{r.fold}/optuna.db")
        trial = next(t for t in study.trials if t.user_attrs.get("tune_trial_id") == r.trial_id)
        assert trial.params[r.param] == r.value and r.low <= r.value <= r.high and 0 <= r.position <= 1
    assert {"optim.lr", "optim.cls_lr", "balancer.w_cls"} <= set(chosen["param"])

    # published: the folds' Optuna storages pooled into one, and the same answer read from it
    out_dir = tmp_path / "published"
    assert run_cli(publish_main, [str(searched), str(out_dir)]) == 0, capsys.readouterr().err
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{out_dir}/optuna.db")}
    assert names == {f"fold-{k}/{m}" for k in (0, 1) for m in ("shared/static", "dual")}
    (out_dir / CHOSEN_FILE).unlink()
    assert run_cli(tuned_main, [str(out_dir), str(default)]) == 0
    assert pd.read_parquet(out_dir / CHOSEN_FILE).equals(chosen)
    assert pd.read_parquet(out_dir / TUNING_GAIN_FILE).equals(gain)


def test_the_chosen_configurations_table_by_hand(tmp_path):
    """python -m study.analyze --markdown's table of what each fold's search chose: one row per method and
    hyperparameter, its range on its own scale, each fold's value with its place in the range, the edge count."""
    import pyarrow as pa

    from study.analysis.markdown import chosen_table
    from study.store.trials import write_atomic

    rows = [(0, "dual", "t0", "optim.lr", 3.1e-4, 3e-4, 1e-2, True),
            (1, "dual", "t1", "optim.lr", 1e-3, 3e-4, 1e-2, True),
            (0, "dual", "t0", "balancer.x", 1.5, 0.0, 3.0, False),
            (1, "dual", "t1", "balancer.x", 2.9, 0.0, 3.0, False)]
    table = pd.DataFrame(rows, columns=["fold", "method", "trial_id", "param", "value", "low", "high", "log"])
    table["position"] = [position(v, lo, hi, log) for v, lo, hi, log in
                         zip(table["value"], table["low"], table["high"], table["log"], strict=True)]
    table["at_edge"] = (table["position"] < 0.05) | (table["position"] > 0.95)
    write_atomic(pa.Table.from_pandas(table, preserve_index=False), tmp_path / CHOSEN_FILE)
    # log10(3.1e-4 / 3e-4) / log10(1e-2 / 3e-4) = 0.0142 / 1.523 = 0.01; log10(1e-3 / 3e-4) / 1.523 = 0.34
    assert chosen_table(tmp_path).splitlines() == [
        "| method | hyperparameter | range | fold 0 | fold 1 | at an edge |",
        "|---|---|---|---|---|---|",
        "| dual | optim.lr | 0.0003 – 0.01, log | 0.000310 (0.01) | 0.00100 (0.34) | 1 of 2 |",
        "| dual | balancer.x | 0 – 3 | 1.50 (0.50) | 2.90 (0.97) | 1 of 2 |"]


def test_static_at_its_defaults_is_equal_so_its_tuning_gain_is_against_equals_default():
    """shared/static's default configuration (w_det = w_cls = 1) is shared/equal's: the same weights on the same
    losses, so the same gradients; a default study that ran shared/equal holds static's default re-runs."""
    import torch

    from tests.balancing_toys import ToyModel, toy_batch, train_step
    from trainables.balancing.registry import build, hparams_of, resolve

    assert resolve("static").same_at_defaults == "equal"
    after = []
    for balancer in (build("static", 2, **{h.name: h.default for h in hparams_of("static")}), build("equal", 2)):
        torch.manual_seed(0)
        model = ToyModel(2)
        optimizer = torch.optim.SGD([p for p in model.parameters()], lr=0.1)
        for step in range(3):
            train_step(model, balancer, optimizer, *toy_batch(2, step))
        after.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(after[0], after[1])  # bit for bit, three steps
    searched = runs("shared/static", {0: [0.40], 1: [0.30], 2: [0.50]})
    default = runs("shared/equal", {0: [0.30], 1: [0.31], 2: [0.40]})
    row = next(r for r in tuning_rows(searched, default, FOLDS) if r["metric"] == "map50")
    assert (row["method_a"], row["method_b"]) == ("shared/static searched", "shared/static default")
    assert row["diff_mean"] == pytest.approx((0.10 - 0.01 + 0.10) / 3)
    # a default study that ran shared/static itself is paired with that, not with equal
    both = pd.concat([default, runs("shared/static", {0: [0.2], 1: [0.2], 2: [0.2]})])
    row = next(r for r in tuning_rows(searched, both, FOLDS) if r["metric"] == "map50")
    assert row["diff_mean"] == pytest.approx((0.2 + 0.1 + 0.3) / 3)


def test_the_report_shows_what_tuning_did(tmp_path):
    """The HTML report's tuning section reads tuning_gain.parquet: here the committed eight-balancer run standing in
    for a searched one against the default verdict over the same folds (a stand-in: it searched nothing, but its
    pairs by fold are real), GradNorm's mAP@.5 "gain" recomputed by hand from the two test_runs tables."""
    import shutil

    from study.analysis.loading import load_study
    from study.analysis.report import build_report
    from study.heldout.verdict import verdict_table
    from study.store.trials import write_atomic
    from tests.published_runs import RESULTS
    from tests.test_report_folds import section_text

    searched, default = tmp_path / "run", RESULTS / "verdict-5x2-160"
    shutil.copytree(RESULTS / "balancers-5x1-160", searched)
    a, b = (pd.read_parquet(d / "test_runs.parquet") for d in (searched, default))
    write_atomic(verdict_table(tuning_rows(a, b, same_folds(searched, default))), searched / TUNING_GAIN_FILE)
    page = build_report(load_study(searched)).html
    text = section_text(page, "tuning")
    per_fold = [(a[(a["method"] == "shared/gradnorm") & (a["fold"] == k)]["test.map50"].mean()
                 - b[(b["method"] == "shared/gradnorm") & (b["fold"] == k)]["test.map50"].mean()) for k in range(5)]
    gain = sum(per_fold) / 5
    assert re.search(rf"shared/gradnorm searched shared/gradnorm default test mAP@0\.5, a − b [0-9.]+ [0-9.]+ "
                     rf"{re.escape(f'{gain:+.3f}')} ± ", text), text
    assert "What each fold's search chose" not in text  # no chosen_configs.parquet: no such table
