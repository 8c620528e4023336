"""Experiment reports from per-user rows: per-arm summaries, SRM check first, tests against control.

Input is one row per user in the experiment: ``arm`` (name), ``impressions``, ``clicks`` and an
``engagement`` value (e.g. watch minutes), as NumPy arrays or an Arrow table. The first arm is the
control. Per arm the report gives users, impressions, CTR (``Σ clicks / Σ impressions``), the share of
users who clicked, and engagement per user; each other arm is compared with control on

* **CTR** with :func:`~funnel.experiments.stats.ratio_ztest`: users are randomised, not impressions, so
  the variance is the delta method's over users (an impression-level z-test over-rejects);
* **clicker rate** (users with a click) with :func:`~funnel.experiments.stats.two_proportion_ztest`;
* **engagement per user** with :func:`~funnel.experiments.stats.welch_ttest`;

plus, per metric, the mSPRT always-valid p-value *of this look* with ``τ = mixing_effect × control``
(for the running minimum over earlier looks, keep the history and use :mod:`~funnel.experiments.sequential`).
The SRM check runs first; when it is flagged the report is marked untrustworthy and says so on top
(:func:`funnel.experiments.report.format_report` prints it).

Example:
    >>> arm = np.array(["control"] * 4 + ["v2"] * 4)
    >>> report = ExperimentReport.from_arrays(
    ...     arm, impressions=np.array([4, 2, 5, 1, 3, 3, 6, 2]), clicks=np.array([1, 0, 1, 0, 1, 1, 2, 0]),
    ...     engagement=np.array([2.0, 0, 3, 1, 4, 2, 5, 1]), arms=["control", "v2"])
    >>> [(a.name, a.users, a.impressions, round(a.ctr, 3)) for a in report.arms]
    [('control', 4, 12, 0.167), ('v2', 4, 14, 0.286)]
    >>> report.trustworthy, round(report.comparisons[0].engagement.diff, 2)
    (True, 1.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from funnel.core.errors import ValidationError
from funnel.experiments.assignment import Experiment
from funnel.experiments.sequential import msprt_p_values
from funnel.experiments.stats import (
    SRM_THRESHOLD,
    Comparison,
    SrmResult,
    ratio_ztest,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
)

COLUMNS = ("arm", "impressions", "clicks", "engagement")
METRICS = ("ctr", "clicker_rate", "engagement")


@dataclass(frozen=True)
class ArmSummary:
    """One arm's totals.

    Attributes:
        name: Arm name. users: Users in the arm. expected_share: Its share under the allocation.
        impressions: Σ impressions. clicks: Σ clicks. ctr: ``clicks / impressions`` (NaN without impressions).
        clickers: Users with at least one click. clicker_rate: ``clickers / users``.
        engagement_per_user: Mean engagement per user.
    """

    name: str
    users: int
    expected_share: float
    impressions: int
    clicks: int
    ctr: float
    clickers: int
    clicker_rate: float
    engagement_per_user: float


@dataclass(frozen=True)
class ArmComparison:
    """One arm against control; a metric is None when it cannot be tested (too few users or impressions).

    Attributes:
        arm: The treatment arm's name.
        ctr: Ratio z-test of CTR. clicker_rate: Two-proportion z-test. engagement: Welch's t-test.
        always_valid_p: mSPRT p-value of this look per metric name in :data:`METRICS` (NaN when untested).
    """

    arm: str
    ctr: Comparison | None
    clicker_rate: Comparison | None
    engagement: Comparison | None
    always_valid_p: dict[str, float]

    def metric(self, name: str) -> Comparison | None:
        """The comparison of metric ``name`` (one of :data:`METRICS`)."""
        return getattr(self, name)


@dataclass(frozen=True)
class ExperimentReport:
    """Per-arm summaries, the SRM check and every arm's comparison with control (the first arm).

    Attributes:
        name: Experiment name. arms: Summaries, control first. srm: The sample-ratio check.
        comparisons: One per non-control arm. alpha: Level of the tests and intervals.
    """

    name: str
    arms: tuple[ArmSummary, ...]
    srm: SrmResult
    comparisons: tuple[ArmComparison, ...]
    alpha: float = 0.05

    @property
    def trustworthy(self) -> bool:
        """False when the sample-ratio check is flagged: the split itself is broken."""
        return not self.srm.flagged

    @classmethod
    def from_arrays(
        cls, arm: np.ndarray, impressions: np.ndarray, clicks: np.ndarray, engagement: np.ndarray, *,
        arms: Sequence[str] | Experiment, weights: Sequence[float] | None = None, name: str | None = None,
        alpha: float = 0.05, srm_threshold: float = SRM_THRESHOLD, mixing_effect: float = 0.1,
    ) -> ExperimentReport:  # fmt: skip
        """Analyse per-user rows.

        Args:
            arm: Arm name per user.
            impressions: Impressions per user (counts ``>= 0``).
            clicks: Clicks per user, ``<= impressions``.
            engagement: Engagement value per user (finite).
            arms: Arm names in order (control first), or an :class:`Experiment` (names, weights, name).
            weights: Allocation weights (default: the experiment's, else equal).
            name: Report title (default: the experiment's name, else ``"experiment"``).
            alpha: Level of the tests and intervals.
            srm_threshold: The SRM check flags ``p < srm_threshold``.
            mixing_effect: mSPRT mixing scale relative to the control value (``τ = mixing_effect · control``).
        """
        names, shares, title = _allocation(arms, weights, name)
        code, imp, clk, eng = _rows(arm, impressions, clicks, engagement, names)
        users = np.bincount(code, minlength=len(names))
        srm = srm_check(users, shares, srm_threshold)
        parts = [code == i for i in range(len(names))]
        summaries = tuple(
            _summary(n, s, imp[m], clk[m], eng[m]) for n, s, m in zip(names, shares, parts, strict=True)
        )
        control = parts[0]
        comparisons = tuple(
            _compare(names[i], (imp[control], clk[control], eng[control]), (imp[m], clk[m], eng[m]), alpha,
                     mixing_effect)
            for i, m in enumerate(parts) if i > 0
        )  # fmt: skip
        return cls(title, summaries, srm, comparisons, alpha)

    @classmethod
    def from_table(cls, table: pa.Table, **kwargs: object) -> ExperimentReport:
        """Analyse an Arrow table with the columns of :data:`COLUMNS` (keywords as :meth:`from_arrays`)."""
        for column in COLUMNS:
            if column not in table.column_names:
                raise ValidationError(f"missing column (need {', '.join(COLUMNS)})", field=column)
        cols = [table.column(c).to_numpy(zero_copy_only=False) for c in COLUMNS]
        return cls.from_arrays(*cols, **kwargs)  # type: ignore[arg-type]


def _allocation(
    arms: Sequence[str] | Experiment, weights: Sequence[float] | None, name: str | None
) -> tuple[list[str], list[float], str]:
    if isinstance(arms, Experiment):
        names, default, title = list(arms.arm_names), list(arms.weights), arms.name
    else:
        names, title = [str(a) for a in arms], "experiment"
        default = [1.0 / len(names)] * len(names) if names else []
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValidationError("need at least 2 distinct arm names", field="arms")
    w = np.asarray(default if weights is None else weights, dtype=float)
    if w.shape != (len(names),) or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValidationError("need one positive weight per arm", field="weights")
    return names, (w / w.sum()).tolist(), name or title


def _rows(
    arm: np.ndarray, impressions: np.ndarray, clicks: np.ndarray, engagement: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(arm).astype(str)
    n = len(labels)
    values = []
    for field, x in (("impressions", impressions), ("clicks", clicks), ("engagement", engagement)):
        arr = np.asarray(x, dtype=float)
        if arr.shape != (n,):
            raise ValidationError(f"need one value per row ({n}), got shape {arr.shape}", field=field)
        values.append(arr)
    imp, clk, eng = values
    unique, code = np.unique(labels, return_inverse=True)
    index = {label: i for i, label in enumerate(names)}
    for label in unique:
        if label not in index:
            row = int(np.flatnonzero(labels == label)[0]) + 1
            raise ValidationError(f"unknown arm {label!r} (arms: {', '.join(names)})", field="arm", row=row)
    _check(~(np.isfinite(imp) & (imp >= 0) & (imp == np.round(imp))), "impressions", "must be a count >= 0")
    _check(~(np.isfinite(clk) & (clk >= 0) & (clk <= imp)), "clicks", "must be in [0, impressions]")
    _check(~np.isfinite(eng), "engagement", "must be finite")
    remap = np.array([index[label] for label in unique], dtype=np.int64)
    return remap[code] if n else np.zeros(0, np.int64), imp, clk, eng


def _check(bad: np.ndarray, field: str, message: str) -> None:
    if bad.any():
        raise ValidationError(message, field=field, row=int(np.flatnonzero(bad)[0]) + 1)


def _summary(name: str, share: float, imp: np.ndarray, clk: np.ndarray, eng: np.ndarray) -> ArmSummary:
    users, total_imp, total_clk = len(imp), int(imp.sum()), int(clk.sum())
    clickers = int((clk > 0).sum())
    return ArmSummary(
        name, users, share, total_imp, total_clk, total_clk / total_imp if total_imp else float("nan"),
        clickers, clickers / users if users else float("nan"), float(eng.mean()) if users else float("nan"),
    )  # fmt: skip


def _compare(arm: str, control: tuple, treatment: tuple, alpha: float, mixing_effect: float) -> ArmComparison:
    (ia, ca, ea), (ib, cb, eb) = control, treatment
    enough = len(ia) >= 2 and len(ib) >= 2
    ctr = ratio_ztest(ca, ia, cb, ib, alpha=alpha) if enough and ia.sum() > 0 and ib.sum() > 0 else None
    clicker = None
    if enough:
        clicker = two_proportion_ztest(
            int((ca > 0).sum()), len(ca), int((cb > 0).sum()), len(cb), alpha=alpha
        )
    engagement = welch_ttest(ea, eb, alpha=alpha) if enough else None
    tests = {"ctr": ctr, "clicker_rate": clicker, "engagement": engagement}
    return ArmComparison(
        arm, ctr, clicker, engagement, {k: _always_valid(c, mixing_effect) for k, c in tests.items()}
    )


def _always_valid(c: Comparison | None, mixing_effect: float) -> float:
    tau2 = (mixing_effect * c.control) ** 2 if c is not None else 0.0
    if c is None or not tau2 > 0 or not np.isfinite(c.stderr):
        return float("nan")
    return float(msprt_p_values(np.array([c.diff]), np.array([c.stderr**2]), tau2)[-1])
