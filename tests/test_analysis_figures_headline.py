"""The headline figures' error bars stay inside a score's range (issue 37): mAP, accuracy and the objective
live in [0, 1], so mean ± CI is drawn clipped to it (asymmetric bars) while the hover keeps the true interval;
costs are drawn whole."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from study.analysis.columns import ACCURACY, COST
from study.analysis.figures_headline import error_bar, headline_figure, heldout_figure
from study.analysis.headline import Headline, Heldout, MethodResult
from study.analysis.stats import MeanCI

HIGH, LOW = "shared/gradnorm", "dual"  # mean 0.95 ± 0.2 and 0.05 ± 0.2 in every panel


def _ends(trace) -> tuple[float, float]:
    """Where a point's drawn error bar ends: (bottom, top)."""
    e, y = trace.error_y, trace.y[0]
    assert e.visible and e.symmetric is False
    return y - e.arrayminus[0], y + e.array[0]


def _points(fig, axis: str) -> dict[str, object]:
    """method -> its mean's trace (the diamond with the error bar) in the panel on x axis ``axis``."""
    return {t.name: t for t in fig.data if t.xaxis == axis and t.error_y is not None and t.error_y.visible}


def test_error_bar_is_clipped_to_the_unit_range_for_scores_only():
    assert _ends(SimpleNamespace(y=[0.95], error_y=SimpleNamespace(**error_bar(0.95, 0.2, True)))) == \
        pytest.approx((0.75, 1.0))
    assert _ends(SimpleNamespace(y=[0.05], error_y=SimpleNamespace(**error_bar(0.05, 0.2, True)))) == \
        pytest.approx((0.0, 0.25))
    assert _ends(SimpleNamespace(y=[0.05], error_y=SimpleNamespace(**error_bar(0.05, 0.2, False)))) == \
        pytest.approx((-0.15, 0.25))  # a cost (or Δm) is not a [0, 1] score: drawn whole
    assert error_bar(0.5, float("nan"), True)["visible"] is False


def test_headline_figure_clips_score_bars_and_keeps_the_true_interval_in_the_hover():
    def result(method: str, mean: float) -> MethodResult:
        cols = [*ACCURACY, *COST]
        return MethodResult(method, "t1", "repeats", stats={c: MeanCI(mean, 0.2, 3) for c in cols},
                            values={c: [mean - 0.1, mean, mean + 0.1] for c in cols})

    head = Headline([result(HIGH, 0.95), result(LOW, 0.05)], baselines={}, notes=[])
    fig = headline_figure(SimpleNamespace(colors=lambda: {HIGH: "#1f77b4", LOW: "#ff7f0e"}), head)
    for k, col in enumerate(ACCURACY):  # the score panels come first, in ACCURACY's order
        points = _points(fig, "x" if k == 0 else f"x{k + 1}")
        assert _ends(points[HIGH]) == pytest.approx((0.75, 1.0)), col  # upper bar ends at 1
        assert _ends(points[LOW]) == pytest.approx((0.0, 0.25)), col  # lower bar ends at 0
        assert "0.95 ± 0.2" in points[HIGH].text[0] and "0.05 ± 0.2" in points[LOW].text[0]  # the true interval
        assert "bar drawn within [0, 1]" in points[HIGH].text[0]
    cost = _points(fig, f"x{len(ACCURACY) + 1}")  # no Δm panel (no baselines): the first cost panel
    assert _ends(cost[LOW]) == pytest.approx((-0.15, 0.25))
    assert "bar drawn within" not in cost[LOW].text[0]


def test_heldout_figure_clips_test_score_bars():
    table = pd.DataFrame({"method": [HIGH, LOW], "test.map.mean": [0.95, 0.05], "test.map.ci95": [0.2, 0.2],
                          "n_seeds": [3, 3], "split": ["test", "test"]})
    fig = heldout_figure(Heldout(table, pd.DataFrame()), {HIGH: "#1f77b4", LOW: "#ff7f0e"})
    points = _points(fig, "x")
    assert _ends(points[HIGH]) == pytest.approx((0.75, 1.0))
    assert _ends(points[LOW]) == pytest.approx((0.0, 0.25))
    assert "0.95 ± 0.2" in points[HIGH].text[0]
