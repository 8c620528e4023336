"""Experiments: deterministic assignment, statistical tests, off-policy evaluation and reports.

* :mod:`~funnel.experiments.assignment`: :class:`Experiment` configs and :func:`assign`.
* :mod:`~funnel.experiments.stats`: SRM check, z / Welch / ratio tests, sample sizes (fixed horizon).
* :mod:`~funnel.experiments.sequential`: mSPRT always-valid p-values for peeking.
* :mod:`~funnel.experiments.off_policy`: IPS, SNIPS and doubly-robust estimates from logged data.
* :mod:`~funnel.experiments.analysis`: :class:`ExperimentReport` from per-user rows (SRM first);
  :func:`~funnel.experiments.report.format_report` renders it as text.
"""

from funnel.experiments.analysis import ArmComparison, ArmSummary, ExperimentReport
from funnel.experiments.assignment import Arm, Experiment, assign
from funnel.experiments.off_policy import OpeEstimate, doubly_robust, expected_model_reward, ips, snips
from funnel.experiments.report import format_report
from funnel.experiments.sequential import msprt_means, msprt_p_values, msprt_proportions
from funnel.experiments.stats import (
    Comparison,
    SrmResult,
    ratio_ztest,
    sample_size_means,
    sample_size_proportions,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
    welch_ttest_from_stats,
)

__all__ = [
    "Arm",
    "ArmComparison",
    "ArmSummary",
    "Comparison",
    "Experiment",
    "ExperimentReport",
    "OpeEstimate",
    "SrmResult",
    "assign",
    "doubly_robust",
    "expected_model_reward",
    "format_report",
    "ips",
    "msprt_means",
    "msprt_p_values",
    "msprt_proportions",
    "ratio_ztest",
    "sample_size_means",
    "sample_size_proportions",
    "snips",
    "srm_check",
    "two_proportion_ztest",
    "welch_ttest",
    "welch_ttest_from_stats",
]
