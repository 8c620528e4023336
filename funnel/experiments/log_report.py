"""The report of a live experiment from the event log: what ``funnel experiment report`` prints.

:func:`report_from_log` joins the log's impressions and interactions to the arms
(:mod:`funnel.experiments.exposure`) and analyses the per-user rows with
:class:`~funnel.experiments.analysis.ExperimentReport`: the SRM check first, then per arm users,
impressions, CTR, clicker rate and engagement per user, each arm against control with the ratio
z-test (CTR), the two-proportion z-test (clicker rate) and Welch's t-test (engagement), with
confidence intervals, relative lift and the mSPRT always-valid p-value. Guardrails per arm:
negative events (skips, not-interested, dislikes) per user — Welch-tested against control — and
per impression, and catalogue coverage (distinct items shown / catalogue size; an arm with more
users shows more distinct items, so compare coverage at similar sizes).

:meth:`LogReport.to_dict` is the JSON of ``GET /v1/experiments/{name}/report`` (NaN as null);
:meth:`LogReport.format` the text of the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow.compute as pc

from funnel.data.lake import Lake
from funnel.events.protocol import EventLog
from funnel.experiments.analysis import METRICS, ExperimentReport
from funnel.experiments.exposure import ExposureRows, exposure_rows
from funnel.experiments.report import format_report, format_table
from funnel.experiments.stats import Comparison, welch_ttest
from funnel.experiments.store import ExperimentRecord


@dataclass(frozen=True)
class Guardrails:
    """One arm's guardrail values.

    Attributes:
        arm: Arm name. negatives: Negative events. negatives_per_user: Their mean per user.
        negative_rate: Per impression. distinct_items: Items shown at least once.
        coverage: ``distinct_items / catalogue size`` (NaN when the catalogue size is unknown).
        vs_control: Welch's test of negatives per user against control (None for control, or too few users).
    """

    arm: str
    negatives: int
    negatives_per_user: float
    negative_rate: float
    distinct_items: int
    coverage: float
    vs_control: Comparison | None


@dataclass(frozen=True)
class LogReport:
    """An experiment's report from the log; ``report`` is None until a user was exposed."""

    record: ExperimentRecord
    report: ExperimentReport | None
    guardrails: tuple[Guardrails, ...]
    catalogue_items: int | None
    dropped_impressions: int
    duplicate_impressions: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (non-finite numbers as None)."""
        exp = self.record.experiment
        out: dict[str, Any] = {
            "experiment": exp.name, "status": exp.status, "ramp": exp.ramp,
            "created_ms": self.record.created_ms, "stopped_ms": self.record.stopped_ms,
            "catalogue_items": self.catalogue_items, "dropped_impressions": self.dropped_impressions,
            "duplicate_impressions": self.duplicate_impressions,
            "guardrails": [{**vars(g), "vs_control": _comparison(g.vs_control)} for g in self.guardrails],
            "srm": None, "trustworthy": None, "alpha": None, "arms": [], "comparisons": [],
        }  # fmt: skip
        r = self.report
        if r is not None:
            srm = r.srm
            out["srm"] = {
                "observed": list(srm.observed), "expected": list(srm.expected), "chi2": srm.chi2,
                "p_value": srm.p_value, "threshold": srm.threshold, "flagged": srm.flagged,
            }  # fmt: skip
            out.update(trustworthy=r.trustworthy, alpha=r.alpha, arms=[vars(a) for a in r.arms])
            out["comparisons"] = [
                {"arm": c.arm, "always_valid_p": dict(c.always_valid_p),
                 **{m: _comparison(c.metric(m)) for m in METRICS}}
                for c in r.comparisons
            ]  # fmt: skip
        return _finite(out)

    def format(self) -> str:
        """The report as text: the experiment, the SRM check, the results, then the guardrails."""
        exp, rec = self.record.experiment, self.record
        when = f"started {_iso(rec.created_ms)}" + (
            f", stopped {_iso(rec.stopped_ms)}" if rec.stopped_ms else ""
        )
        lines = [f"experiment {exp.name}: {exp.status}, ramp {exp.ramp:g}%, {when}"]
        if self.report is None:
            return "\n".join([*lines, "no exposed users in the event log yet"])
        lines += [format_report(self.report), "", "guardrails (negatives: skip, not_interested, dislike)"]
        rows = [
            [g.arm, f"{g.negatives:,}", _fmt(g.negatives_per_user, ".4g"), _fmt(g.negative_rate, ".2%"),
             f"{g.distinct_items:,}", _fmt(g.coverage, ".1%"),
             f"{g.vs_control.diff:+.4g} (p {g.vs_control.p_value:.3g})" if g.vs_control else "-"]
            for g in self.guardrails
        ]  # fmt: skip
        header = ["arm", "negatives", "per user", "per impression", "items shown", "coverage", "vs control"]
        lines.append(format_table(header, rows, left=1))
        if self.catalogue_items is None:
            lines.append("coverage: catalogue size unknown (no items in the lake)")
        notes = (
            (self.dropped_impressions, "of an unknown arm or of a user's second arm: dropped"),
            (self.duplicate_impressions, "repeating a logged request_id: counted once"),
        )
        lines += [f"note: {n:,} impressions {what}" for n, what in notes if n]
        return "\n".join(lines)


def report_from_log(
    log: EventLog,
    record: ExperimentRecord,
    catalogue_items: int | None = None,
    alpha: float = 0.05,
) -> LogReport:
    """The report of ``record``'s experiment from ``log`` (see the module docstring)."""
    rows = exposure_rows(log, record.experiment, record.stopped_ms)
    report = None
    if rows.users:
        report = ExperimentReport.from_arrays(
            rows.arm, rows.impressions, rows.clicks, rows.engagement, arms=record.experiment, alpha=alpha
        )
    guardrails = _guardrails(rows, record, catalogue_items, alpha)
    return LogReport(
        record, report, guardrails, catalogue_items, rows.dropped_impressions, rows.duplicate_impressions
    )


def catalogue_size(lake: Lake) -> int | None:
    """Items of the lake's catalogue that are not unlisted (None when the lake has no items)."""
    status = lake.read("items", columns=["status"]).column("status")
    if not len(status):
        return None
    return len(status) - int(pc.sum(pc.equal(status, "unlisted")).as_py() or 0)


def _guardrails(
    rows: ExposureRows, record: ExperimentRecord, catalogue: int | None, alpha: float
) -> tuple[Guardrails, ...]:
    names = record.experiment.arm_names
    neg = [rows.negatives[rows.arm == a] for a in names]
    imp = [int(rows.impressions[rows.arm == a].sum()) for a in names]
    out = []
    for i, arm in enumerate(names):
        test = (
            welch_ttest(neg[0], neg[i], alpha=alpha) if i and len(neg[0]) >= 2 and len(neg[i]) >= 2 else None
        )
        shown = len(rows.items[arm])
        per_user = float(neg[i].mean()) if len(neg[i]) else math.nan
        rate = neg[i].sum() / imp[i] if imp[i] else math.nan
        coverage = shown / catalogue if catalogue else math.nan
        out.append(Guardrails(arm, int(neg[i].sum()), per_user, rate, shown, coverage, test))
    return tuple(out)


def _comparison(c: Comparison | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {**vars(c), "diff_ci": list(c.diff_ci), "lift_ci": list(c.lift_ci), "significant": c.significant}


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _fmt(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "n/a"


def _iso(ms: int | None) -> str:
    return datetime.fromtimestamp((ms or 0) / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
