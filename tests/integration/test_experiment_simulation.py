"""Seeded simulations of the experiment statistics: A/A false-positive rates, peeking, power, end to end.

Each test simulates many experiments at once (NumPy arrays with one row per simulated experiment),
so the whole file runs in a couple of seconds. With 1000 simulations the standard error of a 5%
rejection rate is 0.7 points.
"""

from __future__ import annotations

import numpy as np

from funnel.experiments.analysis import ExperimentReport
from funnel.experiments.assignment import Experiment, assign
from funnel.experiments.report import format_report
from funnel.experiments.sequential import msprt_means, msprt_proportions
from funnel.experiments.stats import ratio_ztest, sample_size_proportions, two_proportion_z, welch_ttest

SIMS, DAYS, USERS_PER_DAY, RATE = 1000, 14, 2000, 0.10
LOOKS = USERS_PER_DAY * np.arange(1, DAYS + 1)  # cumulative users per arm at each daily look
TAU2 = (0.1 * RATE) ** 2  # mixing variance: effects around 10% relative


def _daily_cumulative_clicks(rng: np.random.Generator, rate_a: float, rate_b: float) -> tuple:
    xa = rng.binomial(USERS_PER_DAY, rate_a, size=(SIMS, DAYS)).cumsum(axis=1)
    xb = rng.binomial(USERS_PER_DAY, rate_b, size=(SIMS, DAYS)).cumsum(axis=1)
    return xa, xb


def test_aa_fixed_horizon_z_rejects_at_the_nominal_rate_and_msprt_at_most_that_under_daily_peeking() -> None:
    xa, xb = _daily_cumulative_clicks(np.random.default_rng(20240611), RATE, RATE)

    _, p_final = two_proportion_z(xa[:, -1], LOOKS[-1], xb[:, -1], LOOKS[-1])
    fixed = float(np.mean(p_final < 0.05))
    assert 0.035 <= fixed <= 0.065, fixed  # measured 0.047

    # peeking at the fixed-horizon z-test every day and stopping at the first p < 0.05 is invalid ...
    _, p_daily = two_proportion_z(xa, LOOKS, xb, LOOKS)
    naive = float(np.mean(p_daily.min(axis=1) < 0.05))
    assert naive > 0.12, naive  # measured 0.197

    # ... while the always-valid mSPRT p-value may be watched every day
    p_seq = msprt_proportions(xa, LOOKS, xb, LOOKS, tau2=TAU2)
    assert np.all(np.diff(p_seq, axis=1) <= 0)
    sequential = float(np.mean(p_seq[:, -1] < 0.05))  # = rejected at any of the 14 looks
    assert sequential <= 0.05, sequential  # measured 0.012


def test_msprt_has_power_against_a_real_effect() -> None:
    xa, xb = _daily_cumulative_clicks(np.random.default_rng(5), RATE, RATE * 1.10)
    p_seq = msprt_proportions(xa, LOOKS, xb, LOOKS, tau2=TAU2)
    power = float(np.mean(p_seq[:, -1] < 0.05))
    assert power > 0.7, power  # measured 0.851 (the fixed-horizon z at day 14: 0.98)
    stopped = np.argmax(p_seq < 0.05, axis=1)[p_seq[:, -1] < 0.05]
    assert np.median(stopped) < DAYS - 1  # most detections come before the last day


def test_sample_size_gives_the_promised_power() -> None:
    n = sample_size_proportions(0.10, 0.10)  # 14,751 per arm for 80% power
    rng = np.random.default_rng(8)
    xa, xb = rng.binomial(n, 0.10, 4000), rng.binomial(n, 0.11, 4000)
    power = float(np.mean(two_proportion_z(xa, n, xb, n)[1] < 0.05))
    assert abs(power - 0.80) < 0.03, power  # SE 0.006; measured 0.786
    xa, xb = rng.binomial(n // 2, 0.10, 4000), rng.binomial(n // 2, 0.11, 4000)
    assert float(np.mean(two_proportion_z(xa, n // 2, xb, n // 2)[1] < 0.05)) < 0.6  # half the users: ~0.51


def _users(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-user impressions (heavy-tailed) and clicks (each user has their own click rate)."""
    impressions = 1 + rng.poisson(rng.lognormal(1.5, 1.0, shape))
    return impressions.astype(float), rng.binomial(impressions, rng.beta(0.5, 4.5, shape)).astype(float)


def test_aa_ctr_needs_the_user_level_ratio_test() -> None:
    # Impressions of one user are correlated; a z-test that treats them as independent over-rejects.
    rng = np.random.default_rng(2)
    sims, users = 1000, 1000
    ia, ca = _users(rng, (sims, users))
    ib, cb = _users(rng, (sims, users))
    _, p_naive = two_proportion_z(ca.sum(axis=1), ia.sum(axis=1), cb.sum(axis=1), ib.sum(axis=1))
    p_ratio = np.array([ratio_ztest(ca[s], ia[s], cb[s], ib[s]).p_value for s in range(sims)])
    naive, ratio = float(np.mean(p_naive < 0.05)), float(np.mean(p_ratio < 0.05))
    assert naive > 0.2, naive  # measured 0.336
    assert 0.03 <= ratio <= 0.075, ratio  # measured 0.041 (the delta method is asymptotic)


def test_aa_skewed_engagement_welch_and_msprt_means() -> None:
    rng = np.random.default_rng(4)
    sims, users_per_day = 400, 250
    x = rng.lognormal(0.0, 1.2, size=(2, sims, DAYS, users_per_day))  # engagement: heavy right tail
    n = users_per_day * np.arange(1, DAYS + 1)
    s1, s2 = x.sum(axis=-1).cumsum(axis=-1), (x**2).sum(axis=-1).cumsum(axis=-1)
    mean = s1 / n
    var = (s2 - n * mean**2) / (n - 1)
    welch = np.mean([welch_ttest(x[0, s].ravel(), x[1, s].ravel()).p_value < 0.05 for s in range(sims)])
    assert 0.025 <= welch <= 0.075, welch  # SE 0.011; measured 0.040
    tau2 = (0.1 * np.exp(0.72)) ** 2  # 10% of the true mean e^{σ²/2}
    p_seq = msprt_means(n, mean[0], var[0], n, mean[1], var[1], tau2=tau2)
    assert np.mean(p_seq[:, -1] < 0.05) <= 0.05  # measured 0.0025


def test_assignment_to_report_end_to_end_and_a_logging_bug_trips_srm() -> None:
    exp = Experiment.from_dict({
        "name": "ranker-v2", "salt": "ranker-v2-2024", "ramp": 50,
        "arms": [{"name": "control", "weight": 1}, {"name": "v2", "weight": 1}],
    })  # fmt: skip
    names = [assign(exp, f"user-{i}") for i in range(40_000)]
    arm = np.array([a for a in names if a is not None])
    n = len(arm)
    assert abs(n - 20_000) < 4 * np.sqrt(40_000 * 0.25)  # the 50% ramp
    rng = np.random.default_rng(9)
    impressions = 1 + rng.poisson(6, n)
    ctr = np.where(arm == "v2", 0.115, 0.10)  # v2 lifts CTR by 15%
    clicks = rng.binomial(impressions, ctr)
    engagement = clicks * rng.exponential(3.0, n)
    report = ExperimentReport.from_arrays(arm, impressions, clicks, engagement, arms=exp)
    assert report.trustworthy, report.srm
    (v2,) = report.comparisons
    assert v2.ctr is not None and v2.ctr.significant and v2.ctr.lift_ci[0] < 0.15 < v2.ctr.lift_ci[1]
    assert v2.always_valid_p["ctr"] < 0.05

    # a logging bug: v2 loses the rows of a third of its users who never clicked
    lost = (arm == "v2") & (clicks == 0) & (rng.random(n) < 1 / 3)
    keep = ~lost
    broken = ExperimentReport.from_arrays(
        arm[keep], impressions[keep], clicks[keep], engagement[keep], arms=exp
    )
    assert broken.srm.flagged and not broken.trustworthy
    assert "SAMPLE RATIO MISMATCH" in format_report(broken)
