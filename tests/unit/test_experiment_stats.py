"""A/B statistics on small hand-checked fixtures: SRM, z, Welch, ratio, sample size, mSPRT, the report.

The A/A and power simulations are in tests/integration/test_experiment_simulation.py.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from funnel.core.errors import ValidationError
from funnel.experiments.analysis import ExperimentReport
from funnel.experiments.assignment import Arm, Experiment
from funnel.experiments.report import format_report
from funnel.experiments.sequential import (
    mixture_log_likelihood_ratio,
    msprt_means,
    msprt_p_values,
    msprt_proportions,
)
from funnel.experiments.stats import (
    ratio_ztest,
    sample_size_means,
    sample_size_proportions,
    srm_check,
    two_proportion_z,
    two_proportion_ztest,
    welch_ttest,
    welch_ttest_from_stats,
)

# --- sample-ratio mismatch -------------------------------------------------------------------------------


def test_srm_hand_value() -> None:
    # expected 50,000 each: chi2 = 2 * 600² / 50,000 = 14.4; 1 df: p = chi2.sf(14.4, 1) ≈ 1.48e-4 < 0.001
    r = srm_check([50_600, 49_400], [0.5, 0.5])
    assert r.expected == (50_000.0, 50_000.0)
    assert r.chi2 == pytest.approx(14.4)
    assert r.p_value == pytest.approx(1.478e-4, rel=1e-3)
    assert r.flagged
    # 50,300 / 49,700: chi2 = 2 * 300² / 50,000 = 3.6, p ≈ 0.058: not flagged
    assert not srm_check([50_300, 49_700], [1, 1]).flagged


def test_srm_detects_a_52_48_split_of_100k_users_and_not_a_true_50_50() -> None:
    rng = np.random.default_rng(20240611)
    skewed = rng.binomial(100_000, 0.52)
    fair = rng.binomial(100_000, 0.50)
    assert srm_check([skewed, 100_000 - skewed], [1, 1]).flagged
    r = srm_check([fair, 100_000 - fair], [1, 1])
    assert not r.flagged and r.p_value > 0.001


def test_srm_uses_the_allocation_weights() -> None:
    rng = np.random.default_rng(7)
    counts = rng.multinomial(30_000, [0.25, 0.25, 0.5])
    assert not srm_check(counts, [1, 1, 2]).flagged
    assert srm_check(counts, [1, 1, 1]).flagged  # the same users judged against an equal split


@pytest.mark.parametrize(
    ("observed", "weights", "field"),
    [([10], [1], "observed"), ([10, -1], [1, 1], "observed"), ([0, 0], [1, 1], "observed"),
     ([10, 10], [1, 0], "weights"), ([10, 10], [1, 1, 1], "weights")],
)  # fmt: skip
def test_srm_rejects_bad_input(observed: list, weights: list, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        srm_check(observed, weights)
    assert info.value.field == field


# --- two-proportion z-test -------------------------------------------------------------------------------


def test_two_proportion_ztest_hand_values() -> None:
    # control 100/1000 = 0.10, treatment 130/1000 = 0.13, pooled p = 230/2000 = 0.115
    # se0 = √(0.115·0.885·(2/1000)) = √0.00020355 = 0.0142671; z = 0.03 / 0.0142671 = 2.10274
    # p = 2·(1 − Φ(2.10274)) = 0.035488
    # CI: se = √(0.1·0.9/1000 + 0.13·0.87/1000) = √0.0002031 = 0.0142513; 0.03 ± 1.95996·0.0142513
    #     = (0.002068, 0.057932)
    # lift = 0.3; se = √(0.0001131/0.1² + 0.13²·0.00009/0.1⁴) = √(0.01131 + 0.01521) = 0.162850
    #     lift CI = 0.3 ± 0.319179 = (−0.019179, 0.619179)
    r = two_proportion_ztest(100, 1000, 130, 1000)
    assert (r.control, r.treatment) == (0.1, 0.13)
    assert r.diff == pytest.approx(0.03)
    assert r.statistic == pytest.approx(2.10274, abs=1e-5)
    assert r.p_value == pytest.approx(0.035488, abs=1e-6)
    assert r.stderr == pytest.approx(0.0142513, abs=1e-7)
    assert r.diff_ci == pytest.approx((0.002068, 0.057932), abs=1e-6)
    assert r.lift == pytest.approx(0.3)
    assert r.lift_ci == pytest.approx((-0.019179, 0.619179), abs=1e-6)
    assert r.significant and r.df is None
    # the pooled z-test is the uncorrected chi-square test of the 2x2 table
    chi2_p = stats.chi2_contingency([[100, 900], [130, 870]], correction=False)[1]
    assert r.p_value == pytest.approx(chi2_p, rel=1e-9)


def test_two_proportion_z_is_vectorised_and_symmetric() -> None:
    z, p = two_proportion_z(np.array([100, 130, 0]), 1000, np.array([130, 100, 0]), 1000)
    assert z[0] == pytest.approx(-z[1]) and p[0] == pytest.approx(p[1])
    assert (z[2], p[2]) == (0.0, 1.0)  # no successes anywhere: no evidence


@pytest.mark.parametrize(
    ("args", "field"),
    [((1, 0, 1, 10), "n_a"), ((11, 10, 1, 10), "successes_a"), ((1, 10, -1, 10), "successes_b")],
)
def test_two_proportion_ztest_rejects_bad_counts(args: tuple, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        two_proportion_ztest(*args)
    assert info.value.field == field


# --- Welch's t-test --------------------------------------------------------------------------------------

A = np.array([4.1, 5.0, 6.2, 5.5, 4.8, 5.9])
B = np.array([5.2, 6.9, 7.4, 5.1, 6.6, 8.0, 7.2, 6.0])


def test_welch_matches_scipy() -> None:
    r = welch_ttest(A, B)
    ref = stats.ttest_ind(B, A, equal_var=False)  # treatment minus control
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.df == pytest.approx(ref.df, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert r.diff_ci == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert r.diff == pytest.approx(B.mean() - A.mean())


def test_welch_from_stats_equals_arrays_and_hand_value() -> None:
    s = welch_ttest_from_stats(len(A), A.mean(), A.var(ddof=1), len(B), B.mean(), B.var(ddof=1))
    assert s == welch_ttest(A, B)
    # equal n = 10, var 1: se = √(0.1 + 0.1) = 0.44721, t = 1 / 0.44721 = 2.23607, df = 0.04 / (2·0.01/9) = 18
    r = welch_ttest_from_stats(10, 1.0, 1.0, 10, 2.0, 1.0)
    assert r.statistic == pytest.approx(2.23607, abs=1e-5) and r.df == pytest.approx(18.0)
    assert r.p_value == pytest.approx(2 * stats.t.sf(math.sqrt(5), 18))
    assert r.lift == pytest.approx(1.0)


def test_welch_rejects_too_few_values() -> None:
    with pytest.raises(ValidationError) as info:
        welch_ttest(np.array([1.0]), B)
    assert info.value.field == "a"
    with pytest.raises(ValidationError) as info:
        welch_ttest(A, np.array([1.0, np.nan]))
    assert info.value.field == "b"


# --- ratio metric (clicks / impressions by user) ---------------------------------------------------------


def test_ratio_ztest_hand_value() -> None:
    # treatment clicks [1, 0, 2, 1] over impressions [2, 1, 3, 2]: R = 4/8 = 0.5
    # residuals num − R·den = [0, −0.5, 0.5, 0], sample variance 0.5/3; Var(R) = (0.5/3) / (4 · 2²) = 1/96
    # control has 0 clicks: R = 0, Var = 0. z = 0.5 / √(1/96) = 4.89898
    r = ratio_ztest(np.zeros(4), np.ones(4), np.array([1.0, 0, 2, 1]), np.array([2.0, 1, 3, 2]))
    assert (r.control, r.treatment) == (0.0, 0.5)
    assert r.statistic == pytest.approx(0.5 * math.sqrt(96))
    assert math.isnan(r.lift)


def test_ratio_ztest_with_one_impression_per_user_is_the_unpooled_z() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.binomial(1, 0.1, 5000).astype(float), rng.binomial(1, 0.12, 5000).astype(float)
    r = ratio_ztest(a, np.ones_like(a), b, np.ones_like(b))
    z = two_proportion_ztest(int(a.sum()), 5000, int(b.sum()), 5000)
    assert r.diff == pytest.approx(z.diff)
    assert r.diff_ci == pytest.approx(z.diff_ci, rel=1e-3)  # sample variances (ddof=1) vs p(1−p)


def test_ratio_ztest_rejects_no_impressions() -> None:
    with pytest.raises(ValidationError) as info:
        ratio_ztest(np.zeros(3), np.zeros(3), np.ones(3), np.ones(3))
    assert info.value.field == "den_a"


# --- sample size -----------------------------------------------------------------------------------------


def test_sample_size_textbook_value() -> None:
    # p1 = 0.10, p2 = 0.11, p̄ = 0.105; z_.975 = 1.959964, z_.8 = 0.841621
    # √(2·0.105·0.895) = √0.18795 = 0.433532;  √(0.1·0.9 + 0.11·0.89) = √0.1879 = 0.433474
    # n = (1.959964·0.433532 + 0.841621·0.433474)² / 0.01² = 1.214528² / 0.0001 = 14,750.8 → 14,751
    assert sample_size_proportions(0.10, 0.10) == 14_751
    # halving the effect needs about 4x the users (a bit fewer: p2 = 0.105 has less variance than 0.11)
    assert 3.8 * 14_751 < sample_size_proportions(0.10, 0.05) < 4 * 14_751
    assert sample_size_proportions(0.10, 0.10, power=0.9) > 14_751
    # means: 2·(1.959964 + 0.841621)²·1² / 0.1² = 1569.8 → 1570
    assert sample_size_means(1.0, 0.1) == 1570


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"baseline": 0.0, "mde": 0.1}, "baseline"), ({"baseline": 0.1, "mde": 0.0}, "mde"),
     ({"baseline": 0.6, "mde": 1.0}, "mde"), ({"baseline": 0.1, "mde": 0.1, "power": 1.0}, "power"),
     ({"baseline": 0.1, "mde": 0.1, "alpha": 0.0}, "alpha")],
)  # fmt: skip
def test_sample_size_rejects_bad_input(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        sample_size_proportions(**kwargs)
    assert info.value.field == field


# --- mSPRT -----------------------------------------------------------------------------------------------


def test_mixture_ratio_equals_the_papers_per_observation_form() -> None:
    # Johari et al.: Λ_n = √(V/(V+nτ²)) exp(n²τ²(d−θ0)²/(2V(V+nτ²))) with V the variance of one pair
    n, V, d, tau2, theta0 = 400, 0.18, 0.03, 0.02**2, 0.005
    paper = 0.5 * math.log(V / (V + n * tau2)) + n**2 * tau2 * (d - theta0) ** 2 / (2 * V * (V + n * tau2))
    ours = mixture_log_likelihood_ratio(np.array(d), np.array(V / n), tau2, theta0)
    assert float(ours) == pytest.approx(paper)


def test_msprt_proportions_hand_value() -> None:
    # last look: p̂a = 150/3000 = 0.05, p̂b = 200/3000 = 0.066667, d = 0.016667
    # v = (0.05·0.95 + 0.066667·0.933333)/3000 = 3.65741e-5, τ² = 1e-4
    # log Λ = ½ log(v/(v+τ²)) + τ²d²/(2v(v+τ²)) = −0.65876 + 2.78052 = 2.12176 → p = e^−2.12176 = 0.11982
    p = msprt_proportions([50, 100, 150], [1000, 2000, 3000], [50, 125, 200], [1000, 2000, 3000], tau2=1e-4)
    assert p[0] == 1.0
    assert p[2] == pytest.approx(0.11982, abs=1e-5)


def test_msprt_p_values_are_a_running_minimum_per_row() -> None:
    diff = np.array([[0.0, 3.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    p = msprt_p_values(diff, np.ones_like(diff), tau2=1.0)
    assert np.all(np.diff(p, axis=-1) <= 0)
    assert p[0, 2] == p[0, 1] < 1 and p[0, 3] < p[0, 2]
    assert np.all(p[1] == 1.0)


def test_msprt_zero_variance_is_no_evidence() -> None:
    assert msprt_proportions([0, 0], [10, 20], [0, 0], [10, 20], tau2=1e-4).tolist() == [1.0, 1.0]


def test_msprt_means_agrees_with_proportions_on_binary_data() -> None:
    # binary data: mean p̂, variance p̂(1−p̂)·n/(n−1); close to the proportions version for large n
    n = np.array([5000.0, 10000.0])
    xa, xb = np.array([500.0, 1000.0]), np.array([560.0, 1160.0])
    pa, pb = xa / n, xb / n
    means = msprt_means(n, pa, pa * (1 - pa) * n / (n - 1), n, pb, pb * (1 - pb) * n / (n - 1), tau2=1e-4)
    props = msprt_proportions(xa, n, xb, n, tau2=1e-4)
    assert means == pytest.approx(props, rel=1e-2)
    assert props[-1] < 0.05


def test_msprt_rejects_bad_tau2() -> None:
    with pytest.raises(ValidationError) as info:
        msprt_p_values(np.zeros(2), np.ones(2), tau2=0.0)
    assert info.value.field == "tau2"


# --- experiment report -----------------------------------------------------------------------------------
# 8 users: control rows 0-3, v2 rows 4-7 (interleaved in the input to check the grouping)
ARM = np.array(["control", "v2", "control", "v2", "control", "v2", "control", "v2"])
IMP = np.array([4, 3, 2, 3, 5, 6, 1, 2])
CLK = np.array([1, 1, 0, 1, 1, 2, 0, 0])
ENG = np.array([2.0, 4, 0, 2, 3, 5, 1, 1])


def _report(**kwargs: object) -> ExperimentReport:
    return ExperimentReport.from_arrays(ARM, IMP, CLK, ENG, arms=["control", "v2"], **kwargs)  # type: ignore[arg-type]


def test_report_arm_summaries_by_hand() -> None:
    control, v2 = _report().arms
    # control: impressions 4+2+5+1 = 12, clicks 2, CTR 1/6, clickers 2 of 4, engagement (2+0+3+1)/4 = 1.5
    assert (control.name, control.users, control.impressions, control.clicks, control.clickers) == (
        "control", 4, 12, 2, 2)  # fmt: skip
    assert control.ctr == pytest.approx(1 / 6) and control.clicker_rate == 0.5
    assert control.engagement_per_user == 1.5 and control.expected_share == 0.5
    # v2: impressions 3+3+6+2 = 14, clicks 4, CTR 2/7, clickers 3 of 4, engagement 12/4 = 3
    assert (v2.users, v2.impressions, v2.clicks, v2.clickers) == (4, 14, 4, 3)
    assert v2.ctr == pytest.approx(2 / 7) and v2.clicker_rate == 0.75 and v2.engagement_per_user == 3.0


def test_report_comparisons_are_the_stats_tests_against_control() -> None:
    report = _report()
    (comp,) = report.comparisons
    c, t = ARM == "control", ARM == "v2"
    assert comp.arm == "v2"
    assert comp.ctr == ratio_ztest(CLK[c], IMP[c], CLK[t], IMP[t])
    assert comp.clicker_rate == two_proportion_ztest(2, 4, 3, 4)
    assert comp.engagement == welch_ttest(ENG[c], ENG[t])
    expected = msprt_p_values(
        np.array([comp.engagement.diff]), np.array([comp.engagement.stderr**2]), 0.15**2
    )
    assert comp.always_valid_p["engagement"] == pytest.approx(expected[-1])  # τ = 0.1 · control mean 1.5
    assert report.trustworthy and not report.srm.flagged


def test_report_from_arrow_table_and_experiment() -> None:
    table = pa.table({"arm": pa.array(ARM).dictionary_encode(), "impressions": IMP, "clicks": CLK,
                      "engagement": ENG, "other": np.zeros(8)})  # fmt: skip
    exp = Experiment("ranker-v2", "salt", (Arm("control", 3), Arm("v2", 1)))
    report = ExperimentReport.from_table(table, arms=exp)
    assert report.name == "ranker-v2" and report.arms[0].expected_share == 0.75
    assert report.srm.expected == (6.0, 2.0)
    assert report.comparisons == _report().comparisons
    with pytest.raises(ValidationError) as info:
        ExperimentReport.from_table(table.drop_columns(["clicks"]), arms=exp)
    assert info.value.field == "clicks"


@pytest.mark.parametrize(
    ("change", "field", "row"),
    [({"arm": np.array([*ARM[:5], "v3", *ARM[6:]])}, "arm", 6),
     ({"clicks": np.array([1, 1, 0, 1, 1, 7, 0, 0])}, "clicks", 6),
     ({"impressions": np.array([4, 3, 2, -3, 5, 6, 1, 2])}, "impressions", 4),
     ({"engagement": np.array([2.0, 4, 0, 2, np.inf, 5, 1, 1])}, "engagement", 5),
     ({"engagement": ENG[:7]}, "engagement", None),
     ({"weights": [1.0]}, "weights", None),
     ({"arms": ["control"]}, "arms", None)],
)  # fmt: skip
def test_report_rejects_bad_rows(change: dict, field: str, row: int | None) -> None:
    kwargs = {"arm": ARM, "impressions": IMP, "clicks": CLK, "engagement": ENG, "arms": ["control", "v2"]}
    with pytest.raises(ValidationError) as info:
        ExperimentReport.from_arrays(**{**kwargs, **change})
    assert (info.value.field, info.value.row) == (field, row)


def test_report_with_an_arm_too_small_to_test() -> None:
    report = ExperimentReport.from_arrays(ARM[:5], IMP[:5], CLK[:5], ENG[:5], arms=["control", "v2", "v3"])
    v2, v3 = report.comparisons
    assert v3.ctr is None and v3.engagement is None and np.isnan(v3.always_valid_p["ctr"])
    assert report.arms[2].users == 0 and np.isnan(report.arms[2].ctr)
    assert v2.engagement is not None
    assert "v3   ctr" in format_report(report) and "n/a" in format_report(report)


def test_format_report_marks_srm_prominently() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    arm = np.where(rng.random(n) < 0.52, "control", "v2")  # 52/48 where 50/50 was planned
    imp = rng.poisson(5, n)
    report = ExperimentReport.from_arrays(arm, imp, rng.binomial(imp, 0.1), rng.exponential(2.0, n),
                                          arms=["control", "v2"], name="ranker-v2")  # fmt: skip
    assert report.srm.flagged and not report.trustworthy
    text = format_report(report)
    head = text.splitlines()[:4]
    assert head[0].startswith("Experiment ranker-v2: 20,000 users")
    assert "SAMPLE RATIO MISMATCH" in head[2] and "UNTRUSTWORTHY" in head[3]
    rows = [
        line for line in text.splitlines() if line.split()[1:2] in (["ctr"], ["clicker_rate"], ["engagement"])
    ]
    assert len(rows) == 3 and all(line.endswith("UNTRUSTWORTHY") for line in rows)
    assert text.index("SAMPLE RATIO MISMATCH") < text.index("impressions")

    fair = np.where(rng.random(n) < 0.5, "control", "v2")
    clicks, engagement = rng.binomial(imp, 0.1), rng.exponential(2.0, n)
    ok = format_report(ExperimentReport.from_arrays(fair, imp, clicks, engagement, arms=["control", "v2"]))
    assert "MISMATCH" not in ok and "UNTRUSTWORTHY" not in ok and ": ok" in ok.splitlines()[1]
