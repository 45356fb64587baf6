"""The verdict (study/heldout/verdict.py): paired differences by fold, checked against hand-computed intervals."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study.analysis.stats import paired_difference, paired_ratio
from study.heldout.costs import COSTS
from study.heldout.verdict import COST_RATIOS, METRICS, method_pairs, verdict_lines, verdict_rows, write_verdict

T2 = 4.302652729911275  # t quantile 0.975 with 2 degrees of freedom
# Nadeau–Bengio: 3 equal folds (no folds.parquet here), n_test / n_train = 1/2, so the standard error of the mean
# over the 3 folds is s · √(1/3 + 1/2) instead of s / √3
NB3 = math.sqrt(1 / 3 + 1 / 2)


def test_paired_difference_by_hand():
    p = paired_difference([0.5, 0.6, 0.7], [0.4, 0.45, 0.5])  # d = 0.10, 0.15, 0.20: mean 0.15, s = 0.05
    assert p.estimate == pytest.approx(0.15) and p.n == 3
    assert p.half_width == pytest.approx(T2 * 0.05 / math.sqrt(3))
    assert (p.low, p.high) == pytest.approx((0.15 - T2 * 0.05 / math.sqrt(3), 0.15 + T2 * 0.05 / math.sqrt(3)))
    # a pair with a missing score is left out; one pair has no interval
    one = paired_difference([0.5, math.nan], [0.4, 0.3])
    assert one.n == 1 and one.estimate == pytest.approx(0.1) and math.isnan(one.half_width)


def test_paired_ratio_is_the_geometric_mean_with_a_log_interval():
    p = paired_ratio([2.0, 8.0, 4.0], [1.0, 2.0, 4.0])  # ratios 2, 4, 1: geometric mean 2
    logs = [math.log(2), math.log(4), 0.0]
    s = pd.Series(logs).std(ddof=1)
    assert p.estimate == pytest.approx(2.0)
    assert p.half_width == pytest.approx(T2 * s / math.sqrt(3))
    assert p.low == pytest.approx(math.exp(math.log(2) - p.half_width))
    assert p.high == pytest.approx(math.exp(math.log(2) + p.half_width))


def fold_runs() -> pd.DataFrame:
    """3 folds x 2 seeds of two methods; the fold means of map50 are 0.5/0.6/0.7 against 0.4/0.45/0.5."""
    rows = []
    for fold, (a, b) in enumerate([(0.5, 0.4), (0.6, 0.45), (0.7, 0.5)]):
        for seed, jitter in ((1000, -0.01), (1001, 0.01)):  # the seeds average out within each fold
            rows.append({"method": "dual", "fold": fold, "train.seed": seed, "test.map50": b + jitter,
                         "test.map": 0.2, "test.view_accuracy": 0.7 + 0.1 * (fold == 1) + jitter,
                         "test.view_macro_f1": 0.5})
            rows.append({"method": "shared/gradnorm", "fold": fold, "train.seed": seed, "test.map50": a + jitter,
                         "test.map": 0.2, "test.view_accuracy": 0.7 + jitter, "test.view_macro_f1": 0.5})
    return pd.DataFrame(rows)


def fold_costs() -> pd.DataFrame:
    rows = []
    for fold in range(3):
        rows.append({"method": "shared/gradnorm", "fold": fold, **{c: 2.0 + fold for c in COSTS}})
        rows.append({"method": "dual", "fold": fold, **{c: 4.0 + 2 * fold for c in COSTS}})
    return pd.DataFrame(rows)


def test_verdict_pairs_by_fold_with_the_hand_computed_interval(tmp_path):
    rows = {r["metric"]: r for r in verdict_rows(fold_runs(), fold_costs())}
    assert set(rows) == {*METRICS, *COST_RATIOS}
    m = rows["map50"]
    assert (m["method_a"], m["method_b"], m["unit"], m["n_pairs"]) == ("shared/gradnorm", "dual", "fold", 3)
    assert m["diff_mean"] == pytest.approx(0.15) and m["diff_ci95"] == pytest.approx(T2 * 0.05 * NB3)
    assert (m["correction"], m["test_train_ratio"]) == ("nadeau-bengio", pytest.approx(0.5))
    # 0.15 ± 0.196 contains 0 and reaches past the ±0.05 margin: the uncorrected ± 0.124 would have said better
    assert m["conclusion"] == "not resolved" and m["margin"] == 0.05
    view = rows["view_accuracy"]  # differences 0, -0.1, 0: the interval covers 0 and more than ±0.03
    assert view["diff_mean"] == pytest.approx(-0.1 / 3) and view["conclusion"] == "not resolved"
    # map: the same score in every fold, an interval [0, 0] inside ±0.02
    assert rows["map"]["diff_mean"] == pytest.approx(0.0) and rows["map"]["conclusion"] == "equivalent within ±0.02"
    step = rows["cost.train_step_ms"]  # shared costs half of dual's in every fold: cheaper, so better
    assert step["kind"] == "ratio" and step["diff_mean"] == pytest.approx(0.5) and step["ci_high"] == pytest.approx(0.5)
    assert step["conclusion"] == "method_a better"
    path = write_verdict(tmp_path, fold_runs(), fold_costs())
    table = pd.read_parquet(path)
    assert list(table.columns[:4]) == ["method_a", "method_b", "metric", "kind"] and len(table) == len(rows)
    line = verdict_lines(table)[0]
    # each method's own mean over the folds beside the difference: (0.5 + 0.6 + 0.7) / 3 and (0.4 + 0.45 + 0.5) / 3
    assert line.startswith("  shared/gradnorm vs dual (3 folds): map50 0.600 vs 0.450, +0.150 ± 0.196 "
                           "(not resolved)")
    # step time: gradnorm 2, 3, 4 ms against dual 4, 6, 8 ms: geometric means 24^(1/3) and 192^(1/3), ratio 0.5
    assert line.endswith("step time 2.88 vs 5.77 ms, ×0.500 [0.500, 0.500] (shared/gradnorm better)")


def test_without_folds_the_pairs_are_seeds_and_one_cost_measurement_has_no_interval():
    runs = fold_runs().drop(columns="fold")
    runs = runs[runs["test.map50"].index < 4]  # fold 0's rows: one split, seeds 1000 and 1001
    rows = {r["metric"]: r for r in verdict_rows(runs, fold_costs().drop(columns="fold").iloc[:2])}
    assert rows["map50"]["unit"] == "seed" and rows["map50"]["n_pairs"] == 2
    assert rows["cost.train_step_ms"]["n_pairs"] == 1 and rows["cost.train_step_ms"]["conclusion"] == "too few pairs"


def test_pairs_of_multi_task_methods_come_first():
    pairs = method_pairs(["det_only", "dual", "cls_only", "shared/gradnorm", "shared@2/gradnorm"])
    multi = [p for p in pairs if "det_only" not in p and "cls_only" not in p]
    assert pairs[:len(multi)] == multi and len(pairs) == 10 and len(multi) == 3  # a split is multi-task too


def test_against_keeps_the_planned_pairs_and_holm_counts_only_them(tmp_path):
    eight = ["shared/equal", "shared/gradnorm", "shared/upgrad", "shared/aligned_mtl", "shared/nash_mtl",
             "shared/famo", "shared/rlw", "dual"]
    references = ["shared/gradnorm", "shared/equal"]
    every, planned = method_pairs(eight), method_pairs(eight, references)
    assert len(every) == 28 and len(planned) == 7 + 6  # each of 6 others against both, and the two against each other
    assert set(planned) <= set(every) and all(set(references) & set(p) for p in planned)
    # a third method, dual's scores plus 0.03: every pair is 3 pairs, the planned ones (against gradnorm) 2
    third = fold_runs().query("method == 'dual'").assign(method="shared/equal")
    runs = pd.concat([fold_runs(), third.assign(**{"test.map50": third["test.map50"] + 0.03})], ignore_index=True)
    costs = pd.concat([fold_costs(), fold_costs().query("method == 'dual'").assign(method="shared/equal")])
    wide, narrow = (pd.read_parquet(write_verdict(tmp_path, runs, costs, against=against)).query("metric == 'map50'")
                    for against in (None, ["shared/gradnorm"]))
    assert len(wide) == 3 and len(narrow) == 2
    assert narrow[["method_a", "method_b"]].isin(["shared/gradnorm"]).any(axis=1).all()
    pair = ("shared/gradnorm", "dual")
    one = {n: t.set_index(["method_a", "method_b"]).loc[pair] for n, t in (("wide", wide), ("narrow", narrow))}
    assert one["narrow"]["diff_mean"] == one["wide"]["diff_mean"]  # the same interval ...
    assert one["narrow"]["n_comparisons"] < one["wide"]["n_comparisons"]  # ... corrected for fewer comparisons
    assert one["narrow"]["p_holm"] <= one["wide"]["p_holm"]


T1 = 12.706204736174696  # t quantile 0.975 with 1 degree of freedom


def failing(runs: pd.DataFrame, where: pd.Series, status: str = "diverged") -> pd.DataFrame:
    """``runs`` with the rows ``where`` turned into failed, unscored re-runs (as score_reruns records them)."""
    runs = runs.assign(status="finished", scored=True, reason="")
    runs.loc[where, ["status", "scored", "reason"]] = [status, False, "no epoch with a validation score"]
    runs.loc[where, [c for c in runs if c.startswith("test.")]] = math.nan
    return runs


def test_a_nan_seed_is_counted_and_its_fold_judged_on_the_seeds_that_scored():
    runs = fold_runs()
    runs = failing(runs, (runs["method"] == "dual") & (runs["fold"] == 1) & (runs["train.seed"] == 1001))
    rows = {r["metric"]: r for r in verdict_rows(runs, fold_costs())}
    m = rows["map50"]
    d = [0.5 - 0.4, 0.6 - (0.45 - 0.01), 0.7 - 0.5]  # dual's fold 1: its one scored seed, 0.44
    mean = sum(d) / 3
    s = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    assert m["n_pairs"] == 3 and m["diff_mean"] == pytest.approx(mean)
    assert m["diff_ci95"] == pytest.approx(T2 * s * NB3)
    assert (m["n_failed_a"], m["n_failed_b"], m["n_lost"], m["lost"]) == (0, 1, 0, "")
    line = verdict_lines(pd.DataFrame(verdict_rows(runs, fold_costs())))[0]
    assert line.startswith("  shared/gradnorm vs dual (3 folds; failed re-runs: dual 1): ")


def test_a_method_without_a_score_in_one_fold_loses_that_fold_and_says_why(tmp_path):
    runs = fold_runs()
    runs = failing(runs, (runs["method"] == "dual") & (runs["fold"] == 2))  # both seeds of fold 2 diverged
    rows = {r["metric"]: r for r in verdict_rows(runs, fold_costs())}
    m = rows["map50"]  # pairs: folds 0 and 1, differences 0.10 and 0.15
    assert m["n_pairs"] == 2 and m["diff_mean"] == pytest.approx(0.125)
    # s² = (0.025² · 2) / 1; 2 of 3 equal folds: √(1/2 + 1/2) = 1
    assert m["diff_ci95"] == pytest.approx(T1 * math.sqrt(0.00125) * 1.0)
    assert m["conclusion"] == "not resolved"
    assert m["n_lost"] == 1 and m["lost"] == "fold 2: dual has no score (2 diverged, 2 unscored)"
    assert (m["n_failed_a"], m["n_failed_b"]) == (0, 2)
    assert rows["cost.train_step_ms"]["n_lost"] == 0  # its costs were measured in every fold
    table = pd.read_parquet(write_verdict(tmp_path, runs, fold_costs()))
    assert table.loc[table["metric"] == "map50", "lost"].item() == m["lost"]
    line = verdict_lines(table)[0]
    assert line.startswith("  shared/gradnorm vs dual (2 folds; 1 LOST: fold 2: dual has no score (2 diverged, 2 "
                           "unscored); failed re-runs: dual 2): map50 0.550 vs 0.425, +0.125 ± ")
    # the headline counts the folds actually scored and the failures
    from study.heldout.reruns import headline_rows

    chosen = pd.DataFrame({"trial_id": ["g", "d"], "method": ["shared/gradnorm", "dual"], "fold": [0, 0]})
    head = {r["method"]: r for r in headline_rows(chosen, runs, fold_costs(), "patient", 0, "d")}
    assert (head["dual"]["n_folds"], head["dual"]["n_runs"], head["dual"]["n_failed"]) == (2, 4, 2)
    assert (head["shared/gradnorm"]["n_folds"], head["shared/gradnorm"]["n_failed"]) == (3, 0)
    assert head["dual"]["test.map50.mean"] == pytest.approx((0.4 + 0.45) / 2)  # the mean over its 2 scored folds


def test_one_fold_only_is_one_pair_of_folds_and_too_few():
    runs = fold_runs()
    rows = {r["metric"]: r for r in verdict_rows(runs[runs["fold"] == 0], fold_costs()[fold_costs()["fold"] == 0])}
    m = rows["map50"]
    assert (m["unit"], m["n_pairs"], m["conclusion"]) == ("fold", 1, "too few pairs")
    assert m["diff_mean"] == pytest.approx(0.1) and m["diff_ci95"] is None


def test_a_cost_ratio_with_spread_has_the_hand_computed_log_interval():
    costs = fold_costs()
    costs.loc[costs["method"] == "shared/gradnorm", "cost.train_step_ms"] = [2.0, 3.0, 8.0]
    costs.loc[costs["method"] == "dual", "cost.train_step_ms"] = [4.0, 3.0, 2.0]  # ratios 0.5, 1, 4
    step = {r["metric"]: r for r in verdict_rows(fold_runs(), costs)}["cost.train_step_ms"]
    logs = [math.log(0.5), 0.0, math.log(4.0)]
    mean = sum(logs) / 3
    half = T2 * math.sqrt(sum((x - mean) ** 2 for x in logs) / 2) * NB3
    assert step["diff_mean"] == pytest.approx(2 ** (1 / 3))  # the geometric mean of the ratios
    assert step["diff_ci95"] == pytest.approx(half)
    assert (step["ci_low"], step["ci_high"]) == pytest.approx((math.exp(mean - half), math.exp(mean + half)))
    # an interval from x0.31 to x8 around 1 says the data cannot tell (issue 30's rule: wider than x2)
    assert step["conclusion"] == "inconclusive" and step["ci_low"] < 1 < step["ci_high"]


def chance_runs() -> pd.DataFrame:
    """3 folds x 1 seed, as after one epoch: both detectors find nothing (mAP@.5 0.001-0.006, a consistent
    +0.004 for dual: an interval that excludes 0), both view heads score at the majority view's share or
    below (0.40 of the test frames), and their macro F1 differs only by chance."""
    rows = []
    for fold, (gn, du) in enumerate([(0.001, 0.005), (0.002, 0.006), (0.0015, 0.0055)]):
        for method, map50, acc in (("shared/gradnorm", gn, 0.40), ("dual", du, 0.38 + 0.01 * fold)):
            rows.append({"method": method, "fold": fold, "train.seed": 1000, "test.map50": map50,
                         "test.map": map50 / 3, "test.view_accuracy": acc, "test.view_macro_f1": acc / 2,
                         "test.view_majority_share": 0.40})
    return pd.DataFrame(rows)


def test_scores_at_chance_for_both_methods_are_inconclusive_never_no_difference():
    rows = {r["metric"]: r for r in verdict_rows(chance_runs(), fold_costs())}
    m = rows["map50"]  # dual is 0.004 higher in every fold: "better" by the interval, but both are at chance
    assert m["ci_high"] < 0 and m["conclusion"] == "inconclusive" and "mAP@.5 below 0.01" in m["reason"]
    assert (m["mean_a"], m["mean_b"]) == pytest.approx((0.0015, 0.0055))  # each method's own mean over the folds
    assert rows["map"]["conclusion"] == "inconclusive"
    for metric in ("view_accuracy", "view_macro_f1"):  # accuracies 0.40 and 0.39 <= 0.40, the majority's share
        assert rows[metric]["conclusion"] == "inconclusive" and "majority view" in rows[metric]["reason"]
    assert rows["view_accuracy"]["mean_b"] == pytest.approx(0.39)
    # the same scores one step above chance (dual's view accuracy 0.45 > 0.40 in one fold): the view task
    # is measured again and its interval decides
    runs = chance_runs()
    runs.loc[(runs["method"] == "dual") & (runs["fold"] == 2), "test.view_accuracy"] = 0.45 * 3 - 0.38 - 0.39
    rows = {r["metric"]: r for r in verdict_rows(runs, fold_costs())}
    assert rows["view_accuracy"]["conclusion"] == "not resolved" and rows["view_accuracy"]["reason"] == ""
    assert rows["map50"]["conclusion"] == "inconclusive"


def test_a_cost_ratio_wider_than_a_factor_of_two_around_one_is_inconclusive():
    costs = fold_costs()
    # ratios a / b: 0.25, 4, 1 -> geometric mean 1, log interval ± T2 * ln(4) / sqrt(3): a factor of ~130
    for fold, (a, b) in enumerate([(1.0, 4.0), (8.0, 2.0), (3.0, 3.0)]):
        costs.loc[(costs["fold"] == fold) & (costs["method"] == "shared/gradnorm"), "cost.train_step_ms"] = a
        costs.loc[(costs["fold"] == fold) & (costs["method"] == "dual"), "cost.train_step_ms"] = b
    rows = {r["metric"]: r for r in verdict_rows(fold_runs(), costs)}
    step = rows["cost.train_step_ms"]
    assert step["diff_mean"] == pytest.approx(1.0) and step["conclusion"] == "inconclusive"
    assert step["ci_high"] / step["ci_low"] == pytest.approx(math.exp(2 * T2 * math.log(4) * NB3))
    # each method's own value is its geometric mean, so that a / b is the ratio shown
    assert (step["mean_a"], step["mean_b"]) == pytest.approx((24 ** (1 / 3), 24 ** (1 / 3)))
    # half of dual's cost in every fold: a narrow interval that excludes 1 stays a finding
    assert rows["cost.latency_ms_b1"]["conclusion"] == "method_a better" and rows["cost.latency_ms_b1"]["reason"] == ""


def test_the_headline_cost_ratio_is_the_verdict_ratio():
    """One ratio definition: headline.parquet's ratio to dual is the verdict's geometric mean of the per-fold
    ratios, not a ratio of arithmetic means (here 4 ms / 3 ms = 1.33 against per-fold ratios 0.25, 4, 1)."""
    from study.heldout.reruns import headline_rows

    costs = fold_costs()
    for fold, (a, b) in enumerate([(1.0, 4.0), (8.0, 2.0), (3.0, 3.0)]):
        costs.loc[(costs["fold"] == fold) & (costs["method"] == "shared/gradnorm"), "cost.train_step_ms"] = a
        costs.loc[(costs["fold"] == fold) & (costs["method"] == "dual"), "cost.train_step_ms"] = b
    chosen = pd.DataFrame({"trial_id": ["default:shared/gradnorm", "default:dual"],
                           "method": ["shared/gradnorm", "dual"]})
    head = {r["method"]: r for r in headline_rows(chosen, fold_runs(), costs, "patient", 0, "data.yaml")}
    step = {r["metric"]: r for r in verdict_rows(fold_runs(), costs)}["cost.train_step_ms"]
    assert head["shared/gradnorm"]["cost.train_step_ms"] == pytest.approx(24 ** (1 / 3)) == step["mean_a"]
    assert head["shared/gradnorm"]["cost.train_step_ms.ratio_dual"] == pytest.approx(step["diff_mean"])
    assert step["diff_mean"] == pytest.approx(1.0)


def test_one_configurations_timings_that_disagree_by_more_than_a_factor_of_two_are_flagged_busy():
    from study.heldout.informative import busy_spreads

    costs = fold_costs().assign(**{"cost.trial_id": lambda d: "default:" + d["method"]})
    # dual's default configuration timed 374, 8,100 and 900 ms in the three folds: the machine was busy
    costs.loc[costs["method"] == "dual", "cost.train_step_ms"] = [374.0, 8100.0, 900.0]
    busy = busy_spreads(costs)
    assert busy == {"dual": {"cost.train_step_ms": (374.0, 8100.0)}}  # gradnorm's 2-4 ms: exactly x2, not flagged
    # searched configurations differ per fold (their own trial ids): nothing to compare, nothing flagged
    assert busy_spreads(costs.assign(**{"cost.trial_id": [f"t{i}" for i in range(len(costs))]})) == {}
