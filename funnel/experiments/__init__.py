"""Experiments: deterministic assignment, statistical tests, off-policy evaluation and reports.

Entry points: :func:`funnel.experiments.assignment.assign` for an :class:`Experiment`.
"""

from funnel.experiments.assignment import Arm, Experiment, assign

__all__ = ["Arm", "Experiment", "assign"]
