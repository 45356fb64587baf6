"""Jet present per valve (trainables/metrics/clinical.py, study/heldout/clinical.py): counts on hand-made clips and
studies, the Youden choice on a hand-made validation set, Wilson against SciPy, and the held-out files' new family
(test_runs -> headline -> verdict) leaving the existing families as they were."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from study.analysis.stats import wilson_interval
from study.heldout.clinical import jet_lines, jet_summary, verdict_jet_lines
from study.heldout.correction import folds_without_table
from study.heldout.reruns import headline_rows
from study.heldout.verdict import verdict_rows
from tests.test_verdict import NB3, T2, fold_costs, fold_runs
from trainables.metrics.clinical import JetFrames, frame_labels, frame_scores, jet_presence, pool, youden_threshold
from trainables.metrics.names import CLINICAL, held_out, label, lookup

NAMES = ["AR", "MR"]


def test_frame_scores_and_labels_by_hand():
    preds = [(np.zeros((3, 4)), np.array([0.4, 0.7, 0.2]), np.array([1, 1, 0])),  # MR's best 0.7, AR's 0.2
             (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))]  # no box: 0 for both
    assert frame_scores(preds, 2).tolist() == [[0.2, 0.7], [0.0, 0.0]]
    gts = [(np.zeros((1, 4)), np.array([0])), (np.zeros((0, 4)), np.zeros(0, np.int64))]
    assert frame_labels(gts, 2).tolist() == [[True, False], [False, False]]
    scores, labels = pool(np.array(["b", "a", "b"]), np.array([[0.1], [0.5], [0.3]]), np.array([[0], [0], [1]], bool))
    assert scores.tolist() == [[0.5], [0.3]] and labels.tolist() == [[False], [True]]  # units a, b (sorted)


def test_the_youden_point_on_a_hand_made_validation_set():
    # P = 3, N = 3; called at s >= t:  t=0.5: TP 3 FP 2, J = 1 + 1/3 - 1 = 1/3;  t=0.6: TP 3 FP 1, J = 2/3;
    # t=0.7: TP 2 FP 1, J = 1/3;  t=0.8: TP 1 FP 1, J = 0;  t=0.9: TP 1 FP 0, J = 1/3  ->  0.6
    scores, labels = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.0]), np.array([1, 0, 1, 1, 0, 0], bool)
    assert youden_threshold(scores, labels) == 0.6
    # a tie: t=0.5 (TP 2 FP 1) and t=0.9 (TP 1 FP 0) both J = 1/2: the lower one
    assert youden_threshold(np.array([0.9, 0.7, 0.5, 0.3]), np.array([1, 0, 1, 0], bool)) == 0.5
    # undefined: no negative, no positive, no box at all
    assert math.isnan(youden_threshold(np.array([0.9, 0.2]), np.array([1, 1], bool)))
    assert math.isnan(youden_threshold(np.array([0.9, 0.2]), np.array([0, 0], bool)))
    assert math.isnan(youden_threshold(np.array([0.0, 0.0]), np.array([1, 0], bool)))


def hand_made() -> tuple[JetFrames, JetFrames]:
    """Validation: 5 frames in 4 clips (the last frame's name gives no clip: a clip of its own); scored: 6 frames,
    5 clips, 3 studies. Columns: AR, MR."""
    val = JetFrames(scores=np.array([[0.8, 0.0], [0.2, 0.6], [0.5, 0.3], [0.0, 0.9], [0.3, 0.0]]),
                    labels=np.array([[1, 0], [1, 1], [0, 0], [0, 1], [1, 0]], bool),
                    clips=np.array(["p1-a", "p1-a", "p1-b", "p2-a", None], dtype=object),
                    studies=np.array(["p1", "p1", "p1", "p2", "p3"]))
    scored = JetFrames(scores=np.array([[0.35, 0.1], [0.1, 0.7], [0.2, 0.0], [0.0, 0.65], [0.3, 0.2], [0.0, 0.6]]),
                       labels=np.array([[1, 0], [0, 0], [1, 1], [0, 1], [0, 0], [0, 0]], bool),
                       clips=np.array(["q1-a", "q1-a", "q1-b", "q2-a", "q2-b", "q3-a"], dtype=object),
                       studies=np.array(["q1", "q1", "q1", "q2", "q2", "q3"]))
    return val, scored


def test_jet_presence_counts_by_hand():
    val, scored = hand_made()
    got = jet_presence(val, scored, NAMES)
    # validation clips (max score, any label): p1-a AR 0.8+ MR 0.6+, p1-b AR 0.5- MR 0.3-, p2-a AR 0- MR 0.9+,
    # the clipless frame AR 0.3+ MR 0-.  AR: t=0.3 TP 2 FP 1 J 1/2, t=0.5 J 0, t=0.8 J 1/2 -> tie, 0.3.
    # MR: t=0.3 TP 2 FP 1 J 1/2, t=0.6 TP 2 FP 0 J 1, t=0.9 J 1/2 -> 0.6
    assert (got["jet_threshold_AR"], got["jet_threshold_MR"]) == (0.3, 0.6)
    # scored clips: q1-a AR 0.35+ MR 0.7-, q1-b AR 0.2+ MR 0+, q2-a AR 0- MR 0.65+, q2-b AR 0.3- MR 0.2-, q3-a AR 0-
    # MR 0.6-.  AR at 0.3: q1-a TP, q1-b FN, q2-a TN, q2-b FP (0.3 >= 0.3), q3-a TN
    assert [got[f"jet_clip_{k}_AR"] for k in ("tp", "fp", "tn", "fn")] == [1, 1, 2, 1]
    assert [got[f"jet_clip_{k}_AR"] for k in ("sensitivity", "specificity", "ppv", "npv")] == \
        pytest.approx([1 / 2, 2 / 3, 1 / 2, 2 / 3])
    # MR at 0.6: q1-a FP, q1-b FN, q2-a TP, q2-b TN, q3-a FP
    assert [got[f"jet_clip_{k}_MR"] for k in ("tp", "fp", "tn", "fn")] == [1, 2, 1, 1]
    assert [got[f"jet_clip_{k}_MR"] for k in ("sensitivity", "specificity", "ppv", "npv")] == \
        pytest.approx([1 / 2, 1 / 3, 1 / 3, 1 / 2])
    # studies: q1 AR 0.35+ MR 0.7+ (its MR jet is in q1-b, found through q1-a's box), q2 AR 0.3- MR 0.65+,
    # q3 AR 0- MR 0.6-.  AR: TP, FP, TN;  MR: TP, TP, FP -- nothing called negative: NPV undefined
    assert [got[f"jet_study_{k}_AR"] for k in ("tp", "fp", "tn", "fn")] == [1, 1, 1, 0]
    assert [got[f"jet_study_{k}_MR"] for k in ("tp", "fp", "tn", "fn")] == [2, 1, 0, 0]
    assert got["jet_study_sensitivity_MR"] == 1.0 and got["jet_study_specificity_MR"] == 0.0
    assert got["jet_study_ppv_MR"] == pytest.approx(2 / 3) and math.isnan(got["jet_study_npv_MR"])
    assert all(lookup(f"val.{k}") is not None and lookup(f"val.{k}").group == CLINICAL for k in got)


def test_no_threshold_where_validation_cannot_place_one():
    val, scored = hand_made()
    val = JetFrames(val.scores, np.ones_like(val.labels), val.clips, val.studies)  # every clip has both jets
    got = jet_presence(val, scored, NAMES)
    assert all(math.isnan(v) for v in got.values())
    lines = jet_lines({f"test.{k}": v for k, v in got.items()}, "test", "val")
    assert "Youden's J is undefined there" in lines[-1] and all("—" in line for line in lines[3:-1])


def test_wilson_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in ((0, 5), (1, 2), (3, 10), (8, 10), (12, 12), (1, 40)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9), (k, n)
    assert wilson_interval(0, 3)[0] == 0.0 and wilson_interval(3, 3)[1] == 1.0  # never outside [0, 1]


def test_evaluate_json_and_table_carry_wilson_intervals_from_the_counts():
    val, scored = hand_made()
    metrics = {f"test.{k}": v for k, v in jet_presence(val, scored, NAMES).items()}
    jets = jet_summary(metrics, "test")
    ar = jets["AR"]["clip"]
    assert ar["tp"] == 1 and ar["fn"] == 1 and isinstance(ar["tp"], int)
    assert ar["sensitivity"]["value"] == 0.5 and ar["sensitivity"]["ci95"] == pytest.approx(wilson_interval(1, 2))
    assert ar["specificity"]["ci95"] == pytest.approx(wilson_interval(2, 3))  # TN 2 of TN + FP = 3
    assert jets["MR"]["study"]["npv"] == {"value": None, "ci95": [None, None]}
    assert jets["AR"]["threshold"] == 0.3
    table = "\n".join(jet_lines(metrics, "test", "val"))
    low, high = wilson_interval(1, 2)
    assert f"0.500 [{low:.3f}, {high:.3f}]" in table and "thresholds chosen on the val split" in table


def with_jets(runs: pd.DataFrame) -> pd.DataFrame:
    """fold_runs with one valve's clip sensitivity and specificity: shared/gradnorm finds more jets in every fold
    (0.7, 0.75, 0.72 against dual's 0.5); both are equally specific (0.8)."""
    gain = (runs["method"] == "shared/gradnorm") * runs["fold"].map({0: 0.2, 1: 0.25, 2: 0.22})
    return runs.assign(**{"test.jet_clip_sensitivity_MR": 0.5 + gain, "test.jet_clip_specificity_MR": 0.8,
                          "test.jet_clip_tp_MR": 3.0})


def test_a_study_without_jet_columns_has_no_jet_rows_and_the_other_families_are_unchanged():
    before, after = fold_runs(), with_jets(fold_runs())
    assert not [m for m in held_out(before.columns) if m.startswith("jet_")]
    assert held_out(after.columns, ("shown",))[-2:] == ("jet_clip_sensitivity_MR", "jet_clip_specificity_MR")
    old = {r["metric"]: r for r in verdict_rows(before, fold_costs())}
    new = {r["metric"]: r for r in verdict_rows(after, fold_costs())}
    assert set(new) - set(old) == {"jet_clip_sensitivity_MR", "jet_clip_specificity_MR"}
    for metric, row in old.items():  # every existing row, its family's count and Holm adjustment as they were
        assert {k: new[metric][k] for k in row} == row, metric
    jets = [new["jet_clip_sensitivity_MR"], new["jet_clip_specificity_MR"]]
    # one test in the family: specificity's differences are all 0 (no spread), not a test
    assert {r["family"] for r in jets} == {CLINICAL} and all(r["n_comparisons"] == 1 for r in jets)
    d = np.array([0.2, 0.25, 0.22])  # sensitivity a - b by fold
    assert jets[0]["diff_mean"] == pytest.approx(d.mean()) and jets[0]["margin"] == 0.10
    assert jets[0]["diff_ci95"] == pytest.approx(T2 * d.std(ddof=1) * NB3)  # 3 folds, no folds.parquet: ρ = 1/2
    assert jets[0]["conclusion"] == "method_a better" == jets[0]["conclusion_holm"]
    assert jets[1]["diff_mean"] == pytest.approx(0.0)
    lines = verdict_jet_lines(pd.DataFrame(list(new.values())))
    assert len(lines) == 1 and "jet present per valve (2 comparisons)" in lines[0]


def test_the_headline_pools_jet_scores_over_folds_with_the_corrected_interval():
    runs = with_jets(fold_runs())
    chosen = runs[["method"]].drop_duplicates().assign(trial_id=["d", "g"])
    rows = headline_rows(chosen, runs, fold_costs(), "patient", 0, "d", correction=folds_without_table(3))
    row = {r["method"]: r for r in rows}["shared/gradnorm"]
    fold_means = np.array([0.7, 0.75, 0.72])  # seeds agree within a fold
    assert row["test.jet_clip_sensitivity_MR.mean"] == pytest.approx(fold_means.mean())
    assert row["test.jet_clip_sensitivity_MR.ci95"] == pytest.approx(T2 * fold_means.std(ddof=1) * NB3)
    assert "test.jet_clip_tp_MR.mean" not in row  # counts stay in test_runs.parquet
    assert label("val.jet_clip_sensitivity_MR") == "jet sensitivity per clip: MR"
