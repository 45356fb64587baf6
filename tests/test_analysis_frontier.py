"""The accuracy–cost frontier: fronts that merge costs within their noise, the noise itself from repeated timings,
the held-out objective, and the figure drawn from the committed results."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.analysis.common import log_ticks, tick_text, value_axis
from study.analysis.figures_pareto import pareto_figure
from study.analysis.frontier import cost_noise, heldout_objective
from study.analysis.loading import load_study
from study.analysis.pareto import pareto_mask

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def test_front_merges_costs_within_noise_by_hand():
    #            0     1     2     3     4     5
    cost = np.array([100., 140., 196., 400., 410., 1000.])
    acc = np.array([0.30, 0.35, 0.40, 0.38, 0.50, 0.50])
    # exact costs: the ordinary staircase 0 < 1 < 2 < 4 (3 is beaten by 2, cheaper and better; 5 by 4, cheaper)
    assert pareto_mask(cost, acc).tolist() == [True, True, True, False, True, False]
    # noise ×1.5: 1 (140 <= 1.5 · 100) beats 0, 2 (196 <= 210) beats 1, 4 beats 3 (410 <= 600, more accurate);
    # 0 is not beaten by 2 directly (196 > 150) but by 1; 2 vs 4: 410 > 294, so both stay; 5 (1000 > 615) is
    # costlier than 4 beyond the noise and no more accurate
    assert pareto_mask(cost, acc, 1.5).tolist() == [False, False, True, False, True, False]
    # noise ×2.5 merges 196 and 410 too: 4 beats 2 and 3; 4 and 5 are one point (1000 <= 410 · 2.5 = 1025, equally
    # accurate): a tie, neither beats the other, both stay
    assert pareto_mask(cost, acc, 2.5).tolist() == [False, False, False, False, True, True]
    with pytest.raises(ValueError, match="factor >= 1"):
        pareto_mask(cost, acc, 0.9)


def test_cost_noise_is_the_median_spread_of_repeated_work_by_hand():
    base = {"cost.params": 1e6, "cost.gflops": 0.25, "cost.batch": 16.0, "cost.imgsz": 160.0, "cost.threads": 2.0,
            "cost.device": "cpu", "cost.precision": "bf16", "cost.memory_format": "channels_last"}
    rows = [  # method, train step ms, latency ms, params
        ("shared/gradnorm", 100.0, 10.0, 1e6), ("shared/gradnorm", 150.0, 11.0, 1e6),
        ("shared/equal", 80.0, 12.0, 1e6), ("shared/equal", 800.0, 9.0, 1e6), ("shared/equal", 88.0, 10.0, 1e6),
        ("dual", 200.0, 20.0, 2e6), ("dual", 240.0, 30.0, 2e6),
        ("dual", 500.0, 50.0, 3e6),  # another network, timed once: no repeat, not counted
    ]
    costs = pd.DataFrame([{**base, "method": m, "cost.train_step_ms": s, "cost.latency_ms_b1": lat,
                           "cost.params": p} for m, s, lat, p in rows])
    step = cost_noise(costs, "cost.train_step_ms")
    # per method and network: 150/100 = 1.5, 800/80 = 10 (a busy timing), 240/200 = 1.2 -> median 1.5
    assert step.factor == pytest.approx(1.5) and (step.groups, step.measurements) == (3, 7)
    # latency ignores the balancer: the shared network's 5 timings (9 .. 12: 1.333) and dual's 2 (1.5) -> 1.4167
    latency = cost_noise(costs, "cost.latency_ms_b1")
    assert latency.factor == pytest.approx((12 / 9 + 1.5) / 2) and latency.groups == 2
    assert cost_noise(costs, "cost.params").factor == 1.0  # counted: exact
    once = cost_noise(costs.drop_duplicates("method"), "cost.train_step_ms")
    assert math.isnan(once.factor) and not once.known and "unknown" in once.describe()
    assert math.isnan(cost_noise(pd.DataFrame(), "cost.train_step_ms").factor)


def test_heldout_objective_pools_seeds_within_folds_by_hand():
    # objective per re-run = (test.map + test.view_accuracy) / 2; fold means 0.4, 0.5, 0.6
    runs = pd.DataFrame([
        {"method": "dual", "fold": 0, "test.map": 0.2, "test.view_accuracy": 0.6, "scored": True},
        {"method": "dual", "fold": 0, "test.map": 0.1, "test.view_accuracy": 0.7, "scored": True},
        {"method": "dual", "fold": 1, "test.map": 0.3, "test.view_accuracy": 0.7, "scored": True},
        {"method": "dual", "fold": 2, "test.map": 0.4, "test.view_accuracy": 0.8, "scored": True},
        {"method": "dual", "fold": 2, "test.map": math.nan, "test.view_accuracy": math.nan, "scored": False},
        {"method": "det_only", "fold": 0, "test.map": 0.3, "test.view_accuracy": math.nan, "scored": True},
    ])
    out = heldout_objective(runs, test_train_ratio=0.5).set_index("method")
    assert list(out.index) == ["dual"]  # a single-task baseline has no multi-task objective
    # s = 0.1, se = 0.1 · √(1/3 + 0.5) = 0.0912871, t(0.975, 2) = 4.302653 -> 0.392777
    assert out.loc["dual", "accuracy"] == pytest.approx(0.5)
    assert out.loc["dual", "ci95"] == pytest.approx(0.392777, abs=1e-6) and out.loc["dual", "n"] == 3


def _front_points(fig) -> list[tuple[float, float]]:
    return [(x, y) for t in fig.data if t.name.startswith("Pareto front") for x, y in zip(t.x, t.y, strict=True)]


@pytest.mark.skipif(not (RESULTS / "pilot38-fifo").is_dir(), reason="committed results absent")
def test_log_axis_ticks_inside_narrow_spans_by_hand():
    # a wide span keeps 1-2-5 ticks, reaching past it by up to a factor of 1.5
    assert log_ticks(0.2, 30) == pytest.approx([0.2, 0.5, 1, 2, 5, 10, 20])
    # 120-190 ms holds no 1-2-5 value (1-1.5-2-3-5-7 only 150): the finest set's 120 and 150 fall inside
    assert log_ticks(120, 190) == pytest.approx([100, 120, 150, 200, 250])
    # narrower than any set: the two ends; one value: one tick
    assert log_ticks(130, 131) == [130, 131]
    assert log_ticks(7.0, 7.0) == [7.0]
    assert [tick_text(t) for t in (0.2, 1.0, 1.5, 120.0, 2_100_000.0, 0.0015)] == [
        "0.2", "1", "1.5", "120", "2,100,000", "0.0015"]
    # 125-180 holds only 150 of the finest set: labelled at its ends
    axis = value_axis(pd.Series([125.0, 180.0]), ratio=1.0)
    assert axis["type"] == "log" and axis["ticktext"] == ["125", "180"]


def test_figure_of_the_committed_fifo_pilot(tmp_path):
    """18 searched trials, no costs timed alone: counted costs only; the front is the best GradNorm trial (the
    best objective at the smaller network), dual's best is below it at a larger cost."""
    notes: list[str] = []
    fig = pareto_figure(load_study(RESULTS / "pilot38-fifo"), notes)
    assert [a.text.split("<br>")[0] for a in fig.layout.annotations] == ["parameters", "GFLOPs / image"]
    front = _front_points(fig)
    assert front == [pytest.approx((1775476.0, 0.370706), abs=1e-6), pytest.approx((0.258841, 0.370706), abs=1e-6)]
    assert sum(len(t.x) for t in fig.data if not t.name.startswith("Pareto")) == 2 * 18
    if importlib.util.find_spec("kaleido") is not None:
        fig.write_image(tmp_path / "pareto.png", width=1400, height=fig.layout.height)
        assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not (RESULTS / "verdict-5x2-160").is_dir(), reason="committed results absent")
def test_figure_of_the_committed_verdict():
    """No searched trial (--samples 0); each method's held-out objective against its costs timed alone in five
    folds. Train step noise ×1.71 (GradNorm's timings 134..229 ms): equal weights' 169 ms is within it of GradNorm's
    149 ms and scores lower, so it is off the front; dual (283 ms > 1.71 · 149) scores higher and stays."""
    fig = pareto_figure(load_study(RESULTS / "verdict-5x2-160"), [])
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == 4 and "noise ×1.71" in titles[2] and "noise ×1.35" in titles[3]
    fronts = [t for t in fig.data if t.name.startswith("Pareto front")]
    assert len(fronts) == 4  # one per cost column
    step = fronts[2]
    assert list(step.x) == pytest.approx([148.71106, 283.268141]) and list(step.text) == ["shared/gradnorm", "dual"]
    assert list(step.y) == pytest.approx([(0.061418 + 0.67934) / 2, (0.0601 + 0.686795) / 2], abs=1e-5)
