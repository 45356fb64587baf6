"""Small statistics for the report: Student-t confidence intervals (plain, or with the Nadeau–Bengio
correction for resampled estimates), their p-values, two one-sided tests of equivalence, Holm's step-down
adjustment, the Wilson interval of an accuracy, the multi-task Δm% and Spearman's rank correlation.

No SciPy: the two-sided t quantile is found by bisection on the exact finite-series CDF that the
t distribution has for an integer number of degrees of freedom (Abramowitz & Stegun 26.7.3-4),
which is all a mean over n seeds needs (df = n - 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


def t_central_probability(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` >= 1 degrees of freedom and t >= 0."""
    if df < 1:
        raise ValueError(f"df={df} must be >= 1")
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        # (2/π)[θ + sinθ cosθ (1 + (2/3)cos²θ + (2·4)/(3·5)cos⁴θ + ... up to cos^(df-3)θ)]
        series, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):
            series += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)
    # sinθ [1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + ... up to cos^(df-2)θ]
    series, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):
        series += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * series


def t_upper_tail(t: float, df: int) -> float:
    """P(T > t) for Student's t with integer ``df`` >= 1, any real (or infinite) t: a one-sided p-value."""
    upper = (1.0 - t_central_probability(abs(t), df)) / 2.0
    return upper if t >= 0 else 1.0 - upper


def t_quantile_two_sided(confidence: float, df: int) -> float:
    """t such that P(|T| < t) = ``confidence``: the CI half-width multiplier (1.96 as df → ∞)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1)")
    lo, hi = 0.0, 1.0
    while t_central_probability(hi, df) < confidence:
        hi *= 2
    for _ in range(200):  # bisection to machine precision; the CDF is monotone in t
        mid = (lo + hi) / 2
        if t_central_probability(mid, df) < confidence:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values and the half-width of its two-sided confidence interval (NaN when n < 2); ``se`` the
    standard error the interval used (half_width = t_{df} · se, df = n − 1)."""

    mean: float
    half_width: float
    n: int
    se: float = math.nan

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_ci(values: Iterable[float], confidence: float = 0.95, test_train_ratio: float = 0.0) -> MeanCI:
    """Mean ± t_{df=n-1} · s · √(1/n + ρ) over the finite values (s: sample standard deviation, ddof=1).

    ``test_train_ratio`` ρ = n_test / n_train is Nadeau & Bengio's correction ("Inference for the
    Generalization Error", Machine Learning 52, 2003; the "corrected resampled t" of Bouckaert & Frank, 2004)
    for n estimates whose training sets overlap, as the K outer folds of a cross-validation do (each pair of
    folds shares K − 2 of its K − 1 training folds): their scores are positively correlated, so s²/n
    understates the variance of their mean. ρ = 0 is the plain Student-t interval s / √n, right for
    independent values (seeds on one split)."""
    if test_train_ratio < 0:
        raise ValueError(f"test_train_ratio={test_train_ratio} must be >= 0")
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0)
    if n == 1:
        return MeanCI(float(x[0]), math.nan, 1)
    se = float(x.std(ddof=1)) * math.sqrt(1.0 / n + test_train_ratio)
    return MeanCI(float(x.mean()), t_quantile_two_sided(confidence, n - 1) * se, n, se)


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval (Wilson 1927) of an accuracy ``correct / n``: how far a score on n
    frames can move by chance. It stays inside [0, 1] and is sound for small n and accuracies near
    0 or 1, where the normal approximation p ± z·sqrt(p(1-p)/n) is not. (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    z = _normal_quantile_two_sided(confidence)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)  # exact at 0 and n but for rounding: no "-0.000"


def _normal_quantile_two_sided(confidence: float) -> float:
    """z with P(|Z| < z) = confidence for a standard normal Z (bisection on erf)."""
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid / math.sqrt(2)) < confidence else (lo, mid)
    return (lo + hi) / 2


def relative_delta(method: float, baseline: float) -> float:
    """(M_m − M_b) / M_b × 100 for a higher-is-better metric; NaN when the baseline is 0 or missing."""
    if not (math.isfinite(method) and math.isfinite(baseline)) or baseline == 0:
        return math.nan
    return (method - baseline) / baseline * 100.0


def delta_m(method: Mapping[str, float], baseline: Mapping[str, float],
            lower_is_better: Mapping[str, bool] | None = None) -> float:
    """Δm% (Maninis et al. 2019; Vandenhende et al. 2021): the mean over tasks i of
    (−1)^{l_i} (M_m,i − M_b,i) / M_b,i × 100, with l_i = 1 when lower is better for task i.

    ``method`` and ``baseline`` map task -> metric; every task of ``baseline`` must be scored
    (NaN otherwise): Δm over a subset of the tasks would not be the same quantity.
    """
    lower = lower_is_better or {}
    terms = []
    for task, base in baseline.items():
        d = relative_delta(method.get(task, math.nan), base)
        terms.append(-d if lower.get(task, False) else d)
    if not terms or any(not math.isfinite(d) for d in terms):
        return math.nan
    return float(np.mean(terms))


def geometric_mean(values: Iterable[float]) -> float:
    """exp(mean log x) over the finite positive values (NaN when there are none): the mean of a cost measured
    several times, so that a ratio of two such means is the geometric mean of the paired ratios."""
    logs = [math.log(v) for v in values if _finite(v) and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan


@dataclass(frozen=True)
class Paired:
    """A paired comparison of a with b over n pairs: the estimate and its two-sided interval [low, high].

    ``kind`` "difference": mean of a − b, ``half_width`` its t half-width. "ratio": geometric mean of
    a / b, its interval exp(mean log(a/b) ± half_width), ``half_width`` on the log scale. ``centre`` and
    ``se`` are the tested quantity on the scale the test runs on (the mean difference, or the mean log
    ratio) and its standard error (half_width = t_{n-1} · se)."""

    kind: str
    estimate: float
    half_width: float
    low: float
    high: float
    n: int
    centre: float = math.nan
    se: float = math.nan

    def _testable(self) -> bool:
        return self.n >= 2 and math.isfinite(self.se) and math.isfinite(self.centre)

    def p_value(self) -> float:
        """Two-sided p-value of "no difference" (a − b = 0, or a / b = 1): P(|T_{n−1}| ≥ |centre| / se). An exact
        comparison (se = 0: the same count in every pair) is 0 when it differs and 1 when it does not; NaN
        when there is nothing to test (n < 2)."""
        if not self._testable():
            return math.nan
        if self.se == 0:
            return 0.0 if self.centre != 0 else 1.0
        return 2.0 * t_upper_tail(abs(self.centre) / self.se, self.n - 1)

    def p_equivalence(self, margin: float) -> float:
        """The two one-sided tests (Schuirmann 1987) of equivalence within ±``margin`` on the tested scale (for
        a ratio: ±log of the ratio margin): the larger p of H0 "centre ≤ −margin" and H0 "centre ≥ +margin".
        p < (1 − confidence) / 2 exactly when the two-sided interval at ``confidence`` lies inside the margin."""
        if not self._testable() or not margin > 0:
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.centre) < margin else 1.0
        df = self.n - 1
        return max(t_upper_tail((self.centre + margin) / self.se, df),
                   t_upper_tail((margin - self.centre) / self.se, df))


def paired_difference(a: Iterable[float], b: Iterable[float], confidence: float = 0.95,
                      test_train_ratio: float = 0.0) -> Paired:
    """Mean of a_i − b_i ± t_{n-1} · s_d · √(1/n + ρ) over the pairs where both are finite (NaN interval when
    n < 2); ρ = ``test_train_ratio`` (``mean_ci``: 0 for independent pairs, n_test / n_train for folds)."""
    d = [x - y for x, y in zip(a, b, strict=True) if _finite(x) and _finite(y)]
    s = mean_ci(d, confidence, test_train_ratio)
    return Paired("difference", s.mean, s.half_width, s.low, s.high, s.n, s.mean, s.se)


def paired_ratio(a: Iterable[float], b: Iterable[float], confidence: float = 0.95,
                 test_train_ratio: float = 0.0) -> Paired:
    """Geometric mean of a_i / b_i with the t interval of mean log(a_i / b_i), back-transformed; pairs where
    both are finite and positive (ρ as ``paired_difference``)."""
    logs = [math.log(x / y) for x, y in zip(a, b, strict=True) if _finite(x) and _finite(y) and x > 0 and y > 0]
    s = mean_ci(logs, confidence, test_train_ratio)
    return Paired("ratio", math.exp(s.mean) if s.n else math.nan, s.half_width, math.exp(s.low) if s.n > 1 else
                  math.nan, math.exp(s.high) if s.n > 1 else math.nan, s.n, s.mean, s.se)


def holm(p_values: Iterable[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the order given: with the m finite p-values sorted
    p_(1) ≤ ... ≤ p_(m), adjusted p_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)). Rejecting where the adjusted
    p < α keeps the chance of any false rejection among the m at most α, whatever their dependence. NaN stays
    NaN and does not count in m."""
    values = list(p_values)
    finite = sorted((p, i) for i, p in enumerate(values) if _finite(p))
    m = len(finite)
    out = [math.nan] * len(values)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's ρ of two equally indexed series over the rows where both are finite (NaN below 3 rows or when
    either is constant): Pearson's correlation of their average ranks."""
    both = pd.DataFrame({"x": x, "y": y}).replace([np.inf, -np.inf], np.nan).dropna()
    if len(both) < 3:
        return math.nan
    rx, ry = both["x"].rank(method="average"), both["y"].rank(method="average")
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(rx.corr(ry))
