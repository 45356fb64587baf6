"""The headline comparison on the hand-made study (tests/test_analysis_helpers.py): numbers by hand."""

from __future__ import annotations

import math

import pytest

from study.analysis.headline import best_searched, headline
from study.analysis.importance import infer_distribution, param_importance
from study.analysis.loading import load_study
from tests.test_analysis_helpers import TRIALS, write_study

T2 = 4.302653  # two-sided 95% Student t, 2 degrees of freedom


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return load_study(write_study(tmp_path_factory.mktemp("study") / "s1"))


def test_methods_and_best_searched_trials(study):
    assert study.methods() == ["shared/gradnorm", "dual", "shared/equal", "det_only", "cls_only"]
    best = best_searched(study.trials)
    # repeats (r1-r3) and the stopped/failed trials are never picked, even when they score higher
    assert dict(zip(best["method"], best["trial_id"], strict=True)) == {
        "shared/gradnorm": "g2", "dual": "d1", "shared/equal": "e1", "det_only": "b1", "cls_only": "c1"}


def test_gradnorm_statistics_are_over_its_seed_repeats_only(study):
    gn = headline(study.trials).get("shared/gradnorm")
    assert gn.seeds == "repeats" and gn.values["best.val.map"] == pytest.approx([0.30, 0.32, 0.34])
    s = gn.stats["best.val.objective"]  # objectives 0.55, 0.57, 0.59: mean 0.57, sd 0.02
    assert s.n == 3 and s.mean == pytest.approx(0.57) and s.half_width == pytest.approx(T2 * 0.02 / math.sqrt(3))
    assert gn.stats["time.train_s"].mean == pytest.approx(11.0)


def test_delta_m_and_cost_ratio_by_hand(study):
    head = headline(study.trials)
    assert head.baselines == {"det": pytest.approx(0.40), "view": pytest.approx(0.80)}
    gn, dual = head.get("shared/gradnorm"), head.get("dual")
    assert gn.delta["det"] == pytest.approx(-20.0) and gn.delta["view"] == pytest.approx(2.5)
    assert gn.delta["m"] == pytest.approx(-8.75)
    assert dual.delta["m"] == pytest.approx((-10.0 + 0.0) / 2)  # mAP 0.36, view 0.80
    assert gn.cost_ratio["time.train_s"] == pytest.approx(11.0 / 20.0)
    assert gn.cost_ratio["eff.gflops"] == pytest.approx(1.0 / 1.8)
    assert dual.cost_ratio["time.train_s"] == pytest.approx(1.0)
    assert math.isnan(head.get("det_only").delta["m"])  # Δm belongs to multi-task models
    assert not any("No seed repeats" in n for n in head.notes)


def test_methods_the_study_never_ran_get_no_note(tmp_path):
    rows = [t for t in TRIALS if t[1] in ("shared",) and t[6] == "finished"]  # a --space gradnorm study
    head = headline(load_study(write_study(tmp_path / "s", rows)).trials)
    assert head.notes == [n for n in head.notes if "det_only" not in n and "cls_only" not in n and "dual" not in n]
    assert math.isnan(head.get("shared/gradnorm").delta["m"])
    assert math.isnan(head.get("shared/gradnorm").cost_ratio["time.train_s"])


def test_a_method_whose_trials_did_not_finish_is_named_with_their_status(tmp_path):
    stopped = [(*t[:6], "stopped", *t[7:]) if t[0] in ("d1", "d2", "b1") else t for t in TRIALS]
    head = headline(load_study(write_study(tmp_path / "s", stopped)).trials)
    assert "No finished dual trial (2 stopped): cost ratios" in " ".join(head.notes)
    assert "No finished det_only trial (1 stopped): Δm% has no det baseline" in " ".join(head.notes)


def test_importance_on_the_hand_made_study(study):
    imp = param_importance(study.trials)
    assert imp.n_trials == 8  # finished, not repeats
    assert set(imp.values) <= {"method", "optim.lr", "optim.cls_lr", "balancer.alpha"}
    assert "method" in imp.values and sum(imp.values.values()) == pytest.approx(1.0)


def test_importance_with_too_few_trials_is_a_note(tmp_path):
    rows = [t for t in TRIALS if t[0] in ("g1", "g2")]
    imp = param_importance(load_study(write_study(tmp_path / "s", rows)).trials)
    assert not imp.values and "at least 3" in imp.note


def test_infer_distribution():
    import pandas as pd

    d = infer_distribution(pd.Series([0.001, 0.01, 0.05]))
    assert d.log and d.low == 0.001 and d.high == 0.05
    assert not infer_distribution(pd.Series([0.5, 1.5])).log
    assert infer_distribution(pd.Series([16, 32], dtype="int64")).high == 32
    assert infer_distribution(pd.Series(["n", "s"])).choices == ("n", "s")
    assert infer_distribution(pd.Series([1.0, 1.0])) is None
