"""How a verdict's interval is built and read: the Nadeau–Bengio correction by hand, p-values against SciPy,
equivalence within a margin (TOST), "not resolved" instead of "no difference", and Holm's adjustment."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study.analysis.stats import Paired, holm, mean_ci, paired_difference, t_upper_tail
from study.errors import UsageError
from study.heldout.correction import NADEAU_BENGIO, fold_correction
from study.heldout.margins import DEFAULT_MARGINS, parse_margins
from study.heldout.verdict import conclusion, holm_rows, verdict_rows, write_verdict

T4 = 2.7764451051977987  # t quantile 0.975 with 4 degrees of freedom


def five_folds_of_eight() -> pd.DataFrame:
    """folds.parquet of 40 patients dealt into 5 folds of 8."""
    return pd.DataFrame({"patient": [f"p{i:02d}" for i in range(40)], "fold": [i // 8 for i in range(40)],
                         "frames": [30] * 40})


def test_the_fold_correction_counts_patients_test_over_train():
    c = fold_correction(five_folds_of_eight())
    assert c.name == NADEAU_BENGIO and c.test_train_ratio == pytest.approx(8 / 32)
    # unequal folds: the mean over folds of n_test / n_train, by hand: 2/6, 3/5, 3/5
    uneven = pd.DataFrame({"patient": list("abcdefgh"), "fold": [0, 0, 1, 1, 1, 2, 2, 2]})
    assert fold_correction(uneven).test_train_ratio == pytest.approx((2 / 6 + 3 / 5 + 3 / 5) / 3)


def test_corrected_half_width_by_hand():
    d = [0.10, -0.02, 0.05, 0.08, 0.01]  # per-fold differences a − b
    mean = sum(d) / 5
    s = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    ci = mean_ci(d, 0.95, test_train_ratio=8 / 32)
    assert ci.half_width == pytest.approx(T4 * s * math.sqrt(1 / 5 + 8 / 32))
    # against the plain interval: √((1/5 + 1/4) / (1/5)) = 1.5 times wider with 5 equal folds
    assert ci.half_width / mean_ci(d, 0.95).half_width == pytest.approx(1.5)


def test_the_verdict_and_headline_over_five_folds_use_the_corrected_interval(tmp_path):
    five_folds_of_eight().to_parquet(tmp_path / "folds.parquet")
    a = [0.30, 0.20, 0.25, 0.35, 0.22]
    b = [0.20, 0.22, 0.20, 0.27, 0.21]
    runs = pd.DataFrame([{"method": m, "fold": k, "train.seed": 1000, "repeat_of": f"default:{m}",
                          "test.map50": x, "status": "finished", "scored": True}
                         for m, xs in (("shared/gradnorm", a), ("dual", b)) for k, x in enumerate(xs)])
    table = pd.read_parquet(write_verdict(tmp_path, runs, pd.DataFrame(columns=["method"])))
    row = table[table["metric"] == "map50"].iloc[0]
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / 5
    s = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    assert row["diff_ci95"] == pytest.approx(T4 * s * math.sqrt(1 / 5 + 1 / 4))
    assert (row["correction"], row["test_train_ratio"]) == ("nadeau-bengio", pytest.approx(0.25))
    from study.heldout.reruns import headline_rows

    chosen = runs[["method", "repeat_of", "fold"]].drop_duplicates().rename(columns={"repeat_of": "trial_id"})
    head = {r["method"]: r for r in headline_rows(chosen, runs, pd.DataFrame(columns=["method"]), "patient", 0,
                                                  "d", correction=fold_correction(five_folds_of_eight()))}
    sa = pd.Series(a).std(ddof=1)
    assert head["shared/gradnorm"]["test.map50.ci95"] == pytest.approx(T4 * sa * math.sqrt(1 / 5 + 1 / 4))
    assert head["shared/gradnorm"]["interval_correction"] == "nadeau-bengio"


def test_t_tail_and_p_values_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for t, df in ((0.0, 1), (1.3, 2), (2.7764451051977987, 4), (-1.1, 4), (7.5, 9), (-0.4, 30)):
        assert t_upper_tail(t, df) == pytest.approx(float(stats.t.sf(t, df)), abs=1e-12)
    p = paired_difference([0.5, 0.6, 0.7, 0.4], [0.45, 0.5, 0.72, 0.3])
    ref = stats.ttest_rel([0.5, 0.6, 0.7, 0.4], [0.45, 0.5, 0.72, 0.3])
    assert p.p_value() == pytest.approx(float(ref.pvalue), rel=1e-9)


def paired(centre: float, half: float, n: int = 5, kind: str = "difference") -> Paired:
    """A comparison whose 95% interval is centre ± half (df = n − 1)."""
    t = {5: T4}[n]
    if kind == "ratio":
        return Paired("ratio", math.exp(centre), half, math.exp(centre - half), math.exp(centre + half), n, centre,
                      half / t)
    return Paired("difference", centre, half, centre - half, centre + half, n, centre, half / t)


def test_conclusions_say_what_the_interval_shows():
    m = 0.05
    assert conclusion(paired(0.10, 0.04), True, m, "±0.05") == "method_a better"
    assert conclusion(paired(0.10, 0.04), False, m, "±0.05") == "method_b better"  # lower is better
    assert conclusion(paired(-0.10, 0.04), True, m, "±0.05") == "method_b better"
    assert conclusion(paired(0.01, 0.03), True, m, "±0.05") == "equivalent within ±0.05"  # [-0.02, 0.04]
    # contains 0 but reaches past the margin: never "no difference"
    assert conclusion(paired(-0.001, 0.081), True, m, "±0.05") == "not resolved"
    assert conclusion(Paired("difference", 0.1, math.nan, math.nan, math.nan, 1), True, m, "±0.05") == "too few pairs"
    r = math.log(1.1)
    assert conclusion(paired(0.0, 0.05, kind="ratio"), False, r, "×1.10") == "equivalent within ×1.10"
    assert conclusion(paired(0.0, 0.5, kind="ratio"), False, r, "×1.10") == "not resolved"


def test_p_values_agree_with_the_interval_at_its_edges():
    # the interval's edge exactly at 0: p = 0.05; exactly at the margin: the TOST p = 0.025
    at_zero = paired(0.04, 0.04)
    assert at_zero.p_value() == pytest.approx(0.05)
    at_margin = paired(0.02, 0.03)  # upper edge 0.05 = the margin
    assert at_margin.p_equivalence(0.05) == pytest.approx(0.025)
    inside = paired(0.01, 0.03)
    assert inside.p_equivalence(0.05) < 0.025 and inside.p_value() > 0.05
    # an exact count (no spread) is 0 or 1, not a test statistic
    exact = Paired("ratio", 0.5, 0.0, 0.5, 0.5, 5, math.log(0.5), 0.0)
    assert exact.p_value() == 0.0 and exact.p_equivalence(math.log(1.1)) == 1.0


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.20 with m = 4: 0.04, 0.09, max(0.09, 0.08) = 0.09, 0.20
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    out = holm([0.5, math.nan, 0.01])  # NaN is not a comparison: m = 2
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    # 0.8 · 2 capped at 1; then 0.9 · 1 is raised to the earlier step's 1: never above 1, never below a smaller p
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def verdict_row(metric: str, family: str, p: float, p_eq: float, said: str, half: float = 0.05) -> dict:
    return {"metric": metric, "family": family, "p_value": p, "p_equivalence": p_eq, "diff_ci95": half,
            "conclusion": said}


def test_holm_conclusions_per_family():
    rows = holm_rows([verdict_row("map50", "primary", 0.01, 0.9, "method_a better"),
                      verdict_row("map", "primary", 0.03, 0.9, "method_a better"),
                      verdict_row("view_accuracy", "primary", 0.5, 0.001, "equivalent within ±0.03"),
                      verdict_row("view_macro_f1", "secondary", 0.04, 0.9, "method_b better"),
                      verdict_row("cost.params", "costs", 0.0, 1.0, "method_a better", half=0.0)])
    by = {r["metric"]: r for r in rows}
    assert [by[m]["n_comparisons"] for m in ("map50", "view_macro_f1", "cost.params")] == [3, 1, 0]
    assert by["map50"]["p_holm"] == pytest.approx(0.03) and by["map50"]["conclusion_holm"] == "method_a better"
    assert by["map"]["p_holm"] == pytest.approx(0.06) and by["map"]["conclusion_holm"] == "not resolved"
    assert by["view_accuracy"]["p_equivalence_holm"] == pytest.approx(0.003)
    assert by["view_accuracy"]["conclusion_holm"] == "equivalent within ±0.03"
    # one comparison in its family: Holm changes nothing; an exact count is not a test
    assert by["view_macro_f1"]["conclusion_holm"] == "method_b better"
    assert by["cost.params"]["conclusion_holm"] == "method_a better" and by["cost.params"]["p_holm"] is None


def test_verdict_rows_carry_margins_families_and_comparisons():
    jitter = [0.002, -0.003, 0.001, 0.0, 0.001]  # dual's map50 minus gradnorm's, per fold
    runs = pd.DataFrame([{"method": m, "fold": k, "train.seed": 1000, "test.map50": 0.2 + 0.01 * k + (m == "dual") * x,
                          "test.view_accuracy": 0.7, "status": "finished", "scored": True}
                         for k, x in enumerate(jitter) for m in ("shared/gradnorm", "dual")])
    rows = {r["metric"]: r for r in verdict_rows(runs, pd.DataFrame(columns=["method"]), parse_margins(["map50=0.01"]))}
    assert rows["map50"]["margin"] == 0.01 and rows["map50"]["conclusion"] == "equivalent within ±0.01"
    assert rows["map50"]["family"] == "primary" and rows["view_macro_f1"]["family"] == "secondary"
    assert rows["view_accuracy"]["conclusion"] == "equivalent within ±0.03"  # identical in every fold: exact
    assert rows["map50"]["n_comparisons"] == 1  # map50 alone of the primary scores has spread


def test_margins_parse_with_one_line_errors():
    assert parse_margins(None) == DEFAULT_MARGINS
    assert parse_margins(["map50=0.1", "cost.train_step_ms=1.25"])["cost.train_step_ms"] == 1.25
    for bad, said in (("map50", "METRIC=VALUE"), ("nope=1", "METRIC=VALUE"), ("map50=-1", "> 0"),
                      ("cost.params=0.9", "ratio > 1"), ("map=x", "not a number")):
        with pytest.raises(UsageError, match=said):
            parse_margins([bad])


def test_a_verdict_over_mixed_precisions_is_marked(tmp_path):
    from study.heldout.verdict import reading_lines

    runs = pd.DataFrame([{"method": m, "fold": k, "train.seed": 1000, "test.map50": 0.2 + 0.01 * k, "scored": True,
                          "status": "finished", "eff.precision": "bf16" if k < 2 else "fp32",
                          "eff.memory_format": "channels_last"}
                         for k in range(3) for m in ("shared/gradnorm", "dual")])
    table = pd.read_parquet(write_verdict(tmp_path, runs, pd.DataFrame(columns=["method"])))
    assert set(table["mixed_numerics"]) == {"bf16/channels_last (4 re-runs) and fp32/channels_last (2)"}
    assert any("WARNING" in line and "bf16/channels_last" in line for line in reading_lines(table))
    same = pd.read_parquet(write_verdict(tmp_path, runs.assign(**{"eff.precision": "bf16"}),
                                         pd.DataFrame(columns=["method"])))
    assert set(same["mixed_numerics"]) == {""}


def test_study_verdict_rebuilds_a_published_study_with_planned_pairs(tmp_path, capsys):
    """``python -m study.verdict DIR --against M`` on a copy of the committed verdict: only the pairs with M, the
    same intervals as the full verdict's, and the choice recorded in the manifest; a method the study does not
    have is one line."""
    import json
    import shutil

    from study.cli import run_cli
    from study.verdict import main as verdict_main
    from tests.markdown_pages import ROOT

    study = tmp_path / "v"
    shutil.copytree(ROOT / "docs" / "results" / "verdict-5x2-160", study)
    full = pd.read_parquet(study / "verdict.parquet")
    assert verdict_main([str(study), "--against", "shared/equal"]) == 0
    planned = pd.read_parquet(study / "verdict.parquet")
    pairs = set(zip(planned["method_a"], planned["method_b"], strict=True))
    assert len(pairs) == 2 and all("shared/equal" in p for p in pairs)
    assert len(set(zip(full["method_a"], full["method_b"], strict=True))) == 3
    keys = ["method_a", "method_b", "metric"]
    joined = planned.merge(full, on=keys, suffixes=("", "_full"))
    assert len(joined) == len(planned)
    assert (joined["ci_low"] - joined["ci_low_full"]).abs().max() < 1e-12  # the same intervals, fewer in Holm's family
    assert (joined["n_comparisons"] <= joined["n_comparisons_full"]).all()
    assert json.loads((study / "manifest.json").read_text())["verdict_rebuilt"]["against"] == ["shared/equal"]
    capsys.readouterr()
    assert run_cli(verdict_main, [str(study), "--against", "shared/nash_mtl"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--against shared/nash_mtl" in err[0], err
