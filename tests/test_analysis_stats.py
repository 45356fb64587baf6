"""Student-t quantiles and intervals, Δm%, and Pareto fronts on hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from study.analysis.pareto import pareto_front, pareto_mask
from study.analysis.stats import (
    delta_m,
    mean_ci,
    relative_delta,
    t_central_probability,
    t_quantile_two_sided,
    wilson_interval,
)

# two-sided 95% and 99% critical values of Student's t (any statistics table)
T_TABLE = {1: (12.706, 63.657), 2: (4.303, 9.925), 3: (3.182, 5.841), 4: (2.776, 4.604), 5: (2.571, 4.032),
           9: (2.262, 3.250), 10: (2.228, 3.169), 30: (2.042, 2.750)}


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantile_matches_the_table(df):
    q95, q99 = T_TABLE[df]
    assert t_quantile_two_sided(0.95, df) == pytest.approx(q95, abs=1e-3)
    assert t_quantile_two_sided(0.99, df) == pytest.approx(q99, abs=1e-3)


def test_t_quantile_tends_to_the_normal_and_cdf_is_exact_for_cauchy():
    assert t_quantile_two_sided(0.95, 2000) == pytest.approx(1.9600, abs=2e-3)
    # df = 1 is the Cauchy distribution: P(|T| < t) = 2 atan(t) / π
    assert t_central_probability(1.0, 1) == pytest.approx(0.5)
    # df = 2 has P(|T| < t) = t / sqrt(2 + t²)
    assert t_central_probability(3.0, 2) == pytest.approx(3 / math.sqrt(11))


def test_mean_ci_by_hand():
    ci = mean_ci([0.55, 0.57, 0.59])  # s = 0.02, n = 3, t(2) = 4.302653
    assert ci.n == 3 and ci.mean == pytest.approx(0.57)
    assert ci.half_width == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert ci.low == pytest.approx(0.57 - ci.half_width)


def test_mean_ci_of_one_or_no_value_has_no_interval_and_ignores_nan():
    one = mean_ci([0.4, math.nan])
    assert one.n == 1 and one.mean == 0.4 and math.isnan(one.half_width)
    none = mean_ci([])
    assert none.n == 0 and math.isnan(none.mean)


def test_delta_m_by_hand():
    # det: (0.32 - 0.40) / 0.40 = -20 %; view: (0.82 - 0.80) / 0.80 = +2.5 % -> mean -8.75 %
    assert delta_m({"det": 0.32, "view": 0.82}, {"det": 0.40, "view": 0.80}) == pytest.approx(-8.75)
    # a lower-is-better task flips its sign
    assert delta_m({"err": 0.1}, {"err": 0.2}, {"err": True}) == pytest.approx(50.0)
    assert math.isnan(delta_m({"det": 0.3}, {"det": 0.4, "view": 0.8}))  # a task unscored: not Δm
    assert math.isnan(relative_delta(0.3, 0.0))


def test_pareto_mask_by_hand():
    cost = np.array([1.0, 2.0, 3.0, 2.0, 4.0, np.nan, 1.0])
    acc = np.array([0.5, 0.7, 0.9, 0.6, 0.9, 1.0, 0.5])
    # 3 is beaten by 1 (same cost, better); 4 by 2 (cheaper, as good); 5 has no cost; 6 duplicates 0
    assert pareto_mask(cost, acc).tolist() == [True, True, True, False, False, False, True]


def test_pareto_front_sorted_by_cost_and_empty_input():
    df = pd.DataFrame({"c": [3.0, 1.0, 2.0], "a": [0.9, 0.2, 0.5]})
    assert pareto_front(df, "c", "a")["c"].tolist() == [1.0, 2.0, 3.0]
    assert pareto_mask(np.zeros(0), np.zeros(0)).shape == (0,)


def test_wilson_interval_matches_hand_computed_values():
    # 8/10 at 95%: z = 1.959964, centre (0.8 + z²/20) / (1 + z²/10) = 0.71675,
    # half-width z / (1 + z²/10) · sqrt(0.8·0.2/10 + z²/400) = 0.22658
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.71675 - 0.22658, abs=2e-5) and high == pytest.approx(0.71675 + 0.22658, abs=2e-5)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == pytest.approx(1.0)  # stays in [0, 1]
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
