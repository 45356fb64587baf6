"""Each published run's headline.parquet and verdict.parquet (tests/published_runs.py), recomputed from its
test_runs.parquet and folds.parquet with NumPy and SciPy alone — none of the project's statistics code — so a mistake in
study/analysis/stats.py or study/heldout/ cannot hide behind its own tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.published_runs import RUNS, PublishedRun

stats = pytest.importorskip("scipy.stats")

SCORES = ("map50", "map", "view_accuracy", "view_clip_accuracy", "view_macro_f1")
PRIMARY = ("map50", "map", "view_accuracy")  # the registry's headline test metrics


def fold_means(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """method x fold: the mean over the fold's scored seeds."""
    scored = runs[runs["scored"].astype(bool)]
    return scored.groupby(["method", "fold"])[f"test.{metric}"].mean().unstack("fold")


def nadeau_bengio_ratio(folds: pd.DataFrame) -> float:
    sizes = folds.groupby("fold")["patient"].nunique().to_numpy(dtype=float)
    return float(np.mean(sizes / (sizes.sum() - sizes)))


def corrected_half_width(values: np.ndarray, rho: float) -> tuple[float, float]:
    """(standard error, half-width) of the mean of ``values`` with the corrected resampled t."""
    k = len(values)
    se = float(np.std(values, ddof=1) * np.sqrt(1 / k + rho))
    return se, float(stats.t.ppf(0.975, k - 1) * se)


def holm_adjusted(p: list[float]) -> list[float]:
    order = np.argsort(p)
    m, out, running = len(p), [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


@pytest.fixture(scope="module", params=RUNS, ids=[run.name for run in RUNS])
def files(request) -> dict[str, pd.DataFrame]:
    run: PublishedRun = request.param
    names = ("test_runs", "folds", "headline", "verdict")
    return {name: pd.read_parquet(run.folder / f"{name}.parquet") for name in names}


def test_headline_recomputed(files):
    runs, head = files["test_runs"], files["headline"].set_index("method")
    rho = nadeau_bengio_ratio(files["folds"])
    assert rho == pytest.approx(0.25)  # 5 folds of 8 patients
    for metric in SCORES:
        means = fold_means(runs, metric)
        for method, row in means.iterrows():
            values = row.dropna().to_numpy()
            assert head.loc[method, f"test.{metric}.mean"] == pytest.approx(values.mean(), abs=1e-12)
            assert head.loc[method, f"test.{metric}.ci95"] == pytest.approx(corrected_half_width(values, rho)[1],
                                                                             rel=1e-9)
    assert set(head["interval_correction"]) == {"nadeau-bengio"}


def test_verdict_recomputed(files):
    runs, verdict = files["test_runs"], files["verdict"]
    rho = nadeau_bengio_ratio(files["folds"])
    # the five scores; a run scored since the clinical questions existed also has their family (its own Holm)
    rows = verdict[(verdict["kind"] == "difference") & verdict["metric"].isin(SCORES)]
    pairs = set(zip(rows["method_a"], rows["method_b"], strict=True))
    assert set(rows["metric"]) == set(SCORES) and len(rows) == len(pairs) * len(SCORES)
    p_values = {}
    for _, r in rows.iterrows():
        means = fold_means(runs, r["metric"])
        d = (means.loc[r["method_a"]] - means.loc[r["method_b"]]).dropna().to_numpy()
        se, half = corrected_half_width(d, rho)
        p = float(2 * stats.t.sf(abs(d.mean()) / se, len(d) - 1))
        assert (r["diff_mean"], r["diff_ci95"], r["p_value"]) == pytest.approx((d.mean(), half, p), rel=1e-9)
        low, high, m = d.mean() - half, d.mean() + half, r["margin"]
        said = ("method_a better" if low > 0 else "method_b better" if high < 0 else
                f"equivalent within ±{m:g}" if -m < low and high < m else "not resolved")
        assert r["conclusion"] == said, (r["method_a"], r["method_b"], r["metric"])
        p_values[(r["method_a"], r["method_b"], r["metric"])] = p
    # Holm within the primary scores: every compared pair x 3 metrics
    primary = {k: p for k, p in p_values.items() if k[2] in PRIMARY}
    adjusted = dict(zip(primary, holm_adjusted(list(primary.values())), strict=True))
    for key, q in adjusted.items():
        r = rows[(rows["method_a"] == key[0]) & (rows["method_b"] == key[1]) & (rows["metric"] == key[2])].iloc[0]
        assert r["family"] == "primary" and r["n_comparisons"] == len(pairs) * len(PRIMARY)
        assert r["p_holm"] == pytest.approx(q, rel=1e-9)
        if q < 0.05:
            assert r["conclusion_holm"] == r["conclusion"] and r["conclusion"].endswith("better")
        elif not r["conclusion"].startswith("equivalent"):
            assert r["conclusion_holm"] == "not resolved"
    assert "no difference" not in " ".join(verdict["conclusion"]) + " ".join(verdict["conclusion_holm"])
