"""Plain-text rendering of an :class:`~funnel.experiments.analysis.ExperimentReport` for the CLI.

The SRM verdict comes first; a flagged SRM is a banner above everything else, and every comparison's
verdict then reads ``UNTRUSTWORTHY`` instead of significant / not.

Example:
    >>> import numpy as np
    >>> from funnel.experiments.analysis import ExperimentReport
    >>> rng = np.random.default_rng(0)
    >>> arm = np.where(rng.random(1000) < 0.5, "control", "v2")
    >>> report = ExperimentReport.from_arrays(arm, np.full(1000, 10), rng.binomial(10, 0.1, 1000),
    ...                                       rng.exponential(3.0, 1000), arms=["control", "v2"])
    >>> print(format_report(report))  # aligned columns; doctests compare whitespace loosely
    Experiment experiment: 1,000 users, alpha 0.05
    SRM check: chi2 = 2.92, p = 0.088; allocation 50% / 50%: ok
    <BLANKLINE>
    arm      users   share  expected  impressions    CTR  clickers  engagement/user
    control    473  47.30%    50.00%        4,730  9.51%    62.37%            3.077
    v2         527  52.70%    50.00%        5,270  9.39%    59.77%            3.100
    <BLANKLINE>
    vs control (control); diff and lift with 95% intervals
    arm metric control arm value diff lift p always-valid p verdict
    v2 ctr 9.51% 9.39% -0.12pp [-1.30pp, +1.06pp] -1.27% [-13.63%, +11.09%] 0.841 1 -
    v2 clicker_rate 62.37% 59.77% -2.60pp [-8.64pp, +3.45pp] -4.16% [-13.65%, +5.33%] 0.401 1 -
    v2 engagement 3.077 3.100 +0.02283 [-0.3606, +0.4063] +0.74% [-11.75%, +13.23%] 0.907 1 -
"""

from __future__ import annotations

import math

from funnel.experiments.analysis import METRICS, ExperimentReport

BANNER = "!" * 100


def format_report(report: ExperimentReport) -> str:
    """The report as text: title, SRM verdict (a banner when flagged), per-arm table, comparisons table."""
    srm = report.srm
    users = sum(a.users for a in report.arms)
    shares = " / ".join(f"{a.expected_share:.0%}" for a in report.arms)
    lines = [f"Experiment {report.name}: {users:,} users, alpha {report.alpha:g}"]
    if report.trustworthy:
        lines.append(f"SRM check: chi2 = {srm.chi2:.3g}, p = {srm.p_value:.2g}; allocation {shares}: ok")
    else:
        lines += [
            BANNER,
            "!! SAMPLE RATIO MISMATCH: users per arm do not match the allocation "
            f"(chi2 = {srm.chi2:.3g}, p = {srm.p_value:.2g} < {srm.threshold:g}; allocation {shares}).",
            "!! Assignment or logging is broken. The results below are UNTRUSTWORTHY: do not act on them.",
            BANNER,
        ]
    arm_rows = [
        [a.name, f"{a.users:,}", f"{a.users / users:.2%}" if users else "n/a", f"{a.expected_share:.2%}",
         f"{a.impressions:,}", _pct(a.ctr), _pct(a.clicker_rate), _num(a.engagement_per_user)]
        for a in report.arms
    ]  # fmt: skip
    header = ["arm", "users", "share", "expected", "impressions", "CTR", "clickers", "engagement/user"]
    lines += ["", format_table(header, arm_rows, left=1)]
    rows = []
    for comp in report.comparisons:
        for metric in METRICS:
            c = comp.metric(metric)
            if c is None:
                rows.append([comp.arm, metric, *["n/a"] * 7])
                continue
            value = _num if metric == "engagement" else _pct
            verdict = ("significant" if c.significant else "-") if report.trustworthy else "UNTRUSTWORTHY"
            low, high = c.diff_ci
            rows.append([
                comp.arm, metric, value(c.control), value(c.treatment),
                f"{_diff(c.diff, metric)} [{_diff(low, metric)}, {_diff(high, metric)}]",
                f"{c.lift:+.2%} [{c.lift_ci[0]:+.2%}, {c.lift_ci[1]:+.2%}]", f"{c.p_value:.3g}",
                f"{comp.always_valid_p[metric]:.3g}", verdict,
            ])  # fmt: skip
    if rows:
        header = ["arm", "metric", "control", "arm value", "diff", "lift", "p", "always-valid p", "verdict"]
        level = f"{1 - report.alpha:.0%}"
        lines += ["", f"vs control ({report.arms[0].name}); diff and lift with {level} intervals"]
        lines.append(format_table(header, rows, left=2))
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{value:.2%}" if math.isfinite(value) else "n/a"


def _num(value: float) -> str:
    return f"{value:#.4g}" if math.isfinite(value) else "n/a"


def _diff(value: float, metric: str) -> str:
    return f"{value:+.4g}" if metric == "engagement" else f"{value * 100:+.2f}pp"


def format_table(header: list[str], rows: list[list[str]], left: int) -> str:
    """Cells padded to the widest of their column; the first ``left`` columns left-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join(line(cells) for cells in [header, *rows])
