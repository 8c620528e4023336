"""Fixed-horizon A/B statistics: sample-ratio mismatch, proportion, mean and ratio tests, sample sizes.

Every comparison is *treatment − control* and returns a :class:`Comparison`: both estimates, the
difference with its ``1 − alpha`` confidence interval, and the relative lift ``treatment / control − 1``
with a delta-method interval (``Var ≈ v_t / c² + t² v_c / c⁴`` for independent estimates ``c``, ``t``
with variances ``v_c``, ``v_t``). Distributions come from :mod:`scipy.stats`. Sequential (always-valid)
p-values are in :mod:`funnel.experiments.sequential`.

Example:
    >>> r = two_proportion_ztest(100, 1000, 130, 1000)
    >>> round(r.diff, 3), round(r.statistic, 3), round(r.p_value, 4)
    (0.03, 2.103, 0.0355)
    >>> srm_check([5200, 4800], [0.5, 0.5]).flagged
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from funnel.core.errors import ValidationError

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """A sample-ratio-mismatch check: chi-square goodness of fit of users per arm to the allocation.

    Attributes:
        observed: Users per arm. expected: Users per arm the allocation implies.
        chi2: The statistic. p_value: Its p-value (``len(observed) − 1`` degrees of freedom).
        threshold: ``flagged`` when ``p_value < threshold``.
    """

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    threshold: float = SRM_THRESHOLD

    @property
    def flagged(self) -> bool:
        """True when the split is too unlikely under the allocation: do not trust the results."""
        return self.p_value < self.threshold


@dataclass(frozen=True)
class Comparison:
    """Treatment vs control on one metric (see the module docstring for the lift interval).

    Attributes:
        test: Which test (``"z"``, ``"welch-t"``, ``"ratio-z"``).
        control: Control estimate. treatment: Treatment estimate.
        diff: ``treatment − control``. stderr: Its standard error. diff_ci: Its ``1 − alpha`` interval.
        lift: ``treatment / control − 1`` (NaN when control is 0). lift_ci: Its interval.
        statistic: z or t. p_value: Two-sided. alpha: Level of the intervals.
        df: Degrees of freedom of a t test, else None.
    """

    test: str
    control: float
    treatment: float
    diff: float
    stderr: float
    diff_ci: tuple[float, float]
    lift: float
    lift_ci: tuple[float, float]
    statistic: float
    p_value: float
    alpha: float = 0.05
    df: float | None = None

    @property
    def significant(self) -> bool:
        """True when ``p_value < alpha``."""
        return bool(self.p_value < self.alpha)


def srm_check(
    observed: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square goodness of fit of ``observed`` users per arm to the allocation ``weights``.

    Example:
        >>> r = srm_check([50_600, 49_400], [1, 1])
        >>> round(r.chi2, 2), r.flagged
        (14.4, True)
    """
    obs = np.asarray(observed, dtype=float)
    w = np.asarray(weights, dtype=float)
    if obs.ndim != 1 or len(obs) < 2 or np.any(obs < 0) or not np.all(np.isfinite(obs)):
        raise ValidationError("need at least 2 non-negative counts", field="observed")
    if w.shape != obs.shape or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValidationError("need one positive weight per arm", field="weights")
    if obs.sum() == 0:
        raise ValidationError("no users", field="observed")
    expected = w / w.sum() * obs.sum()
    chi2, p = stats.chisquare(obs, expected)
    return SrmResult(tuple(int(x) for x in obs), tuple(expected.tolist()), float(chi2), float(p), threshold)


def two_proportion_z(
    successes_a: np.ndarray | int, n_a: np.ndarray | int, successes_b: np.ndarray | int, n_b: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised pooled two-proportion z statistic and two-sided p-value (``z = 0, p = 1`` if no variance).

    Example:
        >>> z, p = two_proportion_z(np.array([100, 100]), 1000, np.array([130, 100]), 1000)
        >>> np.round(z, 3).tolist(), np.round(p, 4).tolist()
        ([2.103, 0.0], [0.0355, 1.0])
    """
    xa, na, xb, nb = (np.asarray(v, dtype=float) for v in (successes_a, n_a, successes_b, n_b))
    pooled = (xa + xb) / (na + nb)
    se = np.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (xb / nb - xa / na) / se, 0.0)
    return z, 2 * stats.norm.sf(np.abs(z))


def two_proportion_ztest(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, alpha: float = 0.05
) -> Comparison:
    """Two-proportion z-test (pooled under H0); the intervals use the unpooled standard errors."""
    _check_alpha(alpha)
    for name, x, n in (("a", successes_a, n_a), ("b", successes_b, n_b)):
        if not n >= 1:
            raise ValidationError(f"must be >= 1, got {n}", field=f"n_{name}")
        if not 0 <= x <= n:
            raise ValidationError(f"must be in [0, n_{name}], got {x}", field=f"successes_{name}")
    pa, pb = successes_a / n_a, successes_b / n_b
    z, p = two_proportion_z(successes_a, n_a, successes_b, n_b)
    return _comparison("z", pa, pa * (1 - pa) / n_a, pb, pb * (1 - pb) / n_b, float(z), float(p), alpha)


def welch_ttest(a: np.ndarray, b: np.ndarray, *, alpha: float = 0.05) -> Comparison:
    """Welch's t-test of ``mean(b) − mean(a)`` from per-unit values (sample variances, ``ddof=1``)."""
    xa, xb = _values(a, "a"), _values(b, "b")
    return welch_ttest_from_stats(
        len(xa), float(xa.mean()), float(xa.var(ddof=1)), len(xb), float(xb.mean()), float(xb.var(ddof=1)),
        alpha=alpha,
    )  # fmt: skip


def welch_ttest_from_stats(
    n_a: int, mean_a: float, var_a: float, n_b: int, mean_b: float, var_b: float, *, alpha: float = 0.05
) -> Comparison:
    """Welch's t-test from summary statistics (``var`` is the sample variance, ``ddof=1``).

    Example:
        >>> r = welch_ttest_from_stats(10, 1.0, 1.0, 10, 2.0, 1.0)
        >>> round(r.statistic, 4), r.df
        (2.2361, 18.0)
    """
    _check_alpha(alpha)
    for name, n, var in (("a", n_a, var_a), ("b", n_b, var_b)):
        if not n >= 2:
            raise ValidationError(f"need at least 2 values, got {n}", field=f"n_{name}")
        if not var >= 0:
            raise ValidationError(f"must be >= 0, got {var}", field=f"var_{name}")
    va, vb = var_a / n_a, var_b / n_b
    t, p = stats.ttest_ind_from_stats(
        mean_b, math.sqrt(var_b), n_b, mean_a, math.sqrt(var_a), n_a, equal_var=False
    )
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)) if va + vb > 0 else float("nan")
    return _comparison("welch-t", mean_a, va, mean_b, vb, float(t), float(p), alpha, df=df)


def ratio_ztest(
    num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray, *, alpha: float = 0.05
) -> Comparison:
    """z-test of a ratio metric ``Σ num / Σ den`` (e.g. clicks / impressions) randomised by unit.

    Units (users) are independent but their impressions are not, so the variance is the delta
    method's over units: ``Var(R) ≈ (s²_num − 2 R s_num,den + R² s²_den) / (n · mean(den)²)``.
    """
    _check_alpha(alpha)
    ra, va = _ratio(_values(num_a, "num_a"), _values(den_a, "den_a"), "a")
    rb, vb = _ratio(_values(num_b, "num_b"), _values(den_b, "den_b"), "b")
    se = math.sqrt(va + vb)
    z = (rb - ra) / se if se > 0 else 0.0
    return _comparison("ratio-z", ra, va, rb, vb, z, float(2 * stats.norm.sf(abs(z))), alpha)


def sample_size_proportions(baseline: float, mde: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm for a two-sided two-proportion z-test to detect a relative change ``mde``.

    ``n = (z_{1−α/2} √(2 p̄ q̄) + z_{power} √(p₁q₁ + p₂q₂))² / (p₂ − p₁)²`` with ``p₂ = p₁ (1 + mde)``
    and ``p̄`` their mean (the normal approximation without continuity correction), rounded up.

    Example:
        >>> sample_size_proportions(0.10, 0.10)
        14751
    """
    _check_alpha(alpha)
    if not 0 < power < 1:
        raise ValidationError(f"must be in (0, 1), got {power}", field="power")
    if not 0 < baseline < 1:
        raise ValidationError(f"must be in (0, 1), got {baseline}", field="baseline")
    p1, p2 = baseline, baseline * (1 + mde)
    if mde == 0 or not 0 < p2 < 1:
        raise ValidationError(f"baseline * (1 + mde) must be in (0, 1) and differ, got {p2}", field="mde")
    pbar = (p1 + p2) / 2
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    root = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root**2 / (p2 - p1) ** 2)


def sample_size_means(std: float, mde: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Units per arm to detect an absolute mean change ``mde``: ``2 (z_{1−α/2} + z_{power})² σ² / mde²``.

    Example:
        >>> sample_size_means(1.0, 0.1)
        1570
    """
    _check_alpha(alpha)
    if not 0 < power < 1:
        raise ValidationError(f"must be in (0, 1), got {power}", field="power")
    if not std > 0:
        raise ValidationError(f"must be > 0, got {std}", field="std")
    if mde == 0 or not math.isfinite(mde):
        raise ValidationError(f"must be non-zero, got {mde}", field="mde")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return math.ceil(2 * (z * std / mde) ** 2)


def _comparison(
    test: str, c: float, vc: float, t: float, vt: float, statistic: float, p: float, alpha: float,
    df: float | None = None,
) -> Comparison:  # fmt: skip
    zq = float(stats.norm.ppf(1 - alpha / 2))
    q = float(stats.t.ppf(1 - alpha / 2, df)) if df is not None else zq
    se = math.sqrt(vc + vt)
    half = q * se
    if c != 0:
        lift, lift_se = t / c - 1, math.sqrt(vt / c**2 + t**2 * vc / c**4)
    else:
        lift = lift_se = float("nan")
    return Comparison(
        test, c, t, t - c, se, (t - c - half, t - c + half), lift, (lift - zq * lift_se, lift + zq * lift_se),
        statistic, p, alpha, df,
    )  # fmt: skip


def _ratio(num: np.ndarray, den: np.ndarray, arm: str) -> tuple[float, float]:
    if num.shape != den.shape or len(num) < 2:
        raise ValidationError("num and den need the same length, at least 2", field=f"den_{arm}")
    mean_den = den.mean()
    if not mean_den > 0:
        raise ValidationError("no denominator (e.g. no impressions)", field=f"den_{arm}")
    r = num.sum() / den.sum()
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r**2 * cov[1, 1]) / (len(num) * mean_den**2)
    return float(r), float(max(var, 0.0))


def _values(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1 or len(arr) < 2:
        raise ValidationError("need a 1-d array of at least 2 values", field=name)
    if not np.all(np.isfinite(arr)):
        raise ValidationError("must be finite", field=name)
    return arr


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValidationError(f"must be in (0, 1), got {alpha}", field="alpha")
