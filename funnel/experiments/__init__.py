"""Experiments: deterministic assignment, statistical tests, off-policy evaluation and reports.

Entry points: :func:`~funnel.experiments.assignment.assign` for an :class:`Experiment`; the tests in
:mod:`funnel.experiments.stats` (fixed horizon) and :mod:`funnel.experiments.sequential` (mSPRT).
"""

from funnel.experiments.assignment import Arm, Experiment, assign
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
    "Comparison",
    "Experiment",
    "SrmResult",
    "assign",
    "msprt_means",
    "msprt_p_values",
    "msprt_proportions",
    "ratio_ztest",
    "sample_size_means",
    "sample_size_proportions",
    "srm_check",
    "two_proportion_ztest",
    "welch_ttest",
    "welch_ttest_from_stats",
]
