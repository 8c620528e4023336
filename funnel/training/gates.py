"""The promotion gate: a candidate goes live only if it does not regress and its guardrails hold.

With a live version, the gate holds out a **time window**: the latest ``holdout`` share of the
events newer than the live version's data (:func:`window_start`; the split is the ``temporal``
protocol of :mod:`funnel.eval.splits` at that time). Neither version has learnt from it: the live
one was trained before it, and the candidate's recipe (same model, same ranking settings) is
refitted on every event up to the window — the live version's data and the older part of the new
events — into a scratch folder (the *shadow*, deleted afterwards). Both are then asked through
the serving path for the users with held-out items (at most ``max_users``, a seeded sample), with
the same histories — the live one folds in the new events before the window like serving does
with the event log — and scored with :mod:`funnel.eval.metrics`. So the gate asks: does learning
from the new data beat serving the live model with that data as history? Checks
(:class:`GateConfig` holds the thresholds):

* ``window``: at least ``min_window_users`` users have held-out items;
* ``ndcg``: candidate NDCG@k >= live NDCG@k x (1 - ``ndcg_tolerance``);
* ``coverage`` / ``diversity``: at least the absolute floor, and at most ``max_*_drop`` (relative)
  below the live version's;
* ``cold_users``: the candidate itself gives a first-time user a non-empty page in every country
  the data's users have (and without a country when some user has none: such a user is only
  shown items without a region restriction).

Without a live version (the first model), the NDCG check does not apply and the coverage and
diversity floors are checked on the candidate's own lists for ``guardrail_users`` of its users.

Example:
    >>> GateConfig(ndcg_tolerance=0.1).ndcg_floor(0.5)
    0.45
    >>> GateConfig.from_dict({"holdout": 2})
    Traceback (most recent call last):
    ...
    funnel.core.errors.ValidationError: holdout: must be in (0, 1), got 2
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.errors import FunnelError, ValidationError
from funnel.core.idmap import IdMap
from funnel.core.interactions import Interactions
from funnel.eval.splits import split_at
from funnel.training import gate_eval
from funnel.training.bundle import Bundle
from funnel.training.registry import ModelRegistry

Shadow = Callable[[pa.Table, Path], None]
"""Trains the candidate's recipe on the given events into the given folder."""


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate (module docstring); every field is checked on construction."""

    ndcg_tolerance: float = 0.05
    """Relative NDCG@k regression allowed against the live version."""
    holdout: float = 0.2
    """Share of the events newer than the live version's data held out (the latest ones)."""
    min_window_users: int = 20
    max_users: int = 500
    """Window users asked (a seeded sample beyond that): each costs one served list per version."""
    guardrail_users: int = 200
    """Without a live version: users whose lists the coverage / diversity floors are checked on."""
    min_coverage: float = 0.0
    min_diversity: float = 0.0
    max_coverage_drop: float = 0.5
    max_diversity_drop: float = 0.5
    cold_users: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        unit = ("ndcg_tolerance", "min_coverage", "min_diversity", "max_coverage_drop", "max_diversity_drop")
        for name in unit:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValidationError(f"must be a number in [0, 1], got {value!r}", field=name)
        if (
            isinstance(self.holdout, bool)
            or not isinstance(self.holdout, int | float)
            or not 0 < self.holdout < 1
        ):
            raise ValidationError(f"must be in (0, 1), got {self.holdout!r}", field="holdout")
        for name in ("min_window_users", "max_users", "guardrail_users"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"must be an integer >= 1, got {value!r}", field=name)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateConfig:
        """A config from a mapping (JSON); unknown keys are a ``ValidationError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"unknown gate setting(s) {', '.join(unknown)}", field=unknown[0])
        return cls(**data)

    def ndcg_floor(self, live_ndcg: float) -> float:
        """The lowest candidate NDCG@k that passes against ``live_ndcg``."""
        return round(live_ndcg * (1.0 - self.ndcg_tolerance), 12)


@dataclass
class Check:
    """One rule's outcome: the candidate's ``value`` against ``threshold`` (``live``: its value)."""

    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    live: float | None = None
    detail: str = ""


@dataclass
class GateReport:
    """What the gate decided and why; stored in the version's manifest under ``metrics.gate``."""

    passed: bool
    checks: list[Check]
    k: int
    live_version: str | None = None
    window: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def reason(self) -> str:
        """The failed checks' details, ``"; "``-joined (empty when passed)."""
        return "; ".join(c.detail for c in self.checks if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``reason`` included)."""
        return {**asdict(self), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        """The inverse of :meth:`to_dict`."""
        body = {k: v for k, v in data.items() if k != "reason"}
        body["checks"] = [Check(**c) for c in data.get("checks", [])]
        return cls(**body)


def _floor_check(name: str, value: float, floor: float, live: float | None, max_drop: float) -> Check:
    threshold = floor if live is None else max(floor, live * (1.0 - max_drop))
    ok = value >= threshold - 1e-12
    vs = "" if live is None else f" (live {live:.4f}, at most {max_drop:.0%} lower)"
    return Check(
        name, ok, value, threshold, live, f"{name} {value:.4f} below {threshold:.4f}{vs}" if not ok else ""
    )


def run_gate(
    registry: ModelRegistry,
    candidate: str,
    events: pa.Table,
    users: pa.Table,
    k: int,
    config: GateConfig,
    shadow: Shadow,
) -> GateReport:
    """Judge ``candidate`` (a version of ``registry``) trained on ``events``; see the module docstring.

    ``users`` is the users table (countries for the cold-start check); ``shadow`` refits the
    candidate's recipe. Never raises for a failing model: a check that cannot run fails with
    the reason.
    """
    started = time.perf_counter()
    folder = registry.path(candidate)
    pipeline = gate_eval.open_version(folder)
    bundle = pipeline.bundle
    checks: list[Check] = []
    if config.cold_users:
        pages = gate_eval.cold_pages(pipeline, gate_eval.countries_of(users), k)
        empty = [c for c, n in pages.items() if n == 0]
        detail = f"empty page for a first-time user in {', '.join(empty)}" if empty else ""
        checks.append(Check("cold_users", not empty, float(min(pages.values())), 1.0, None, detail))
    report = GateReport(True, checks, k, registry.live(), config=asdict(config))
    n_listed = int(np.count_nonzero(bundle.listed))
    live = report.live_version
    if live is None:
        rows = np.flatnonzero(np.diff(bundle.history.indptr))
        rows = _sample(rows, config.guardrail_users, config.seed)
        recs = gate_eval.served_lists(pipeline, bundle.users.keys_of(rows), k, bundle.items)
        report.candidate = gate_eval.list_metrics(recs, None, bundle.history.T.tocsr(), n_listed)
        checks.append(Check("ndcg", True, None, None, None, "no live version: nothing to compare with"))
        for name in ("coverage", "diversity"):
            floor = getattr(config, f"min_{name}")
            checks.append(_floor_check(name, report.candidate[name], floor, None, 0.0))
    else:
        _compare(registry, live, bundle, events, k, config, shadow, report, n_listed)
    report.passed = all(c.passed for c in report.checks)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def window_start(timestamps: np.ndarray, live_end: int | None, holdout: float) -> int:
    """Where the held-out window starts (events after it are held out; epoch ms).

    The ``1 - holdout`` lower quantile of the event times newer than ``live_end`` (all of them
    when ``None``); ``live_end`` itself when no event is newer (an empty window).

    >>> window_start(np.arange(10), 4, 0.2)  # newer: 5..9; the latest 20% is 9
    8
    >>> window_start(np.arange(10), 9, 0.2)
    9
    """
    newer = timestamps[timestamps > live_end] if live_end is not None else timestamps
    if not len(newer):
        return int(live_end or 0)
    return int(np.quantile(newer, 1.0 - holdout, method="lower"))


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _sample(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(rows) <= n:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))


def _compare(
    registry: ModelRegistry,
    live: str,
    bundle: Bundle,
    events: pa.Table,
    k: int,
    config: GateConfig,
    shadow: Shadow,
    report: GateReport,
    n_listed: int,
) -> None:
    """Candidate recipe (shadow) vs the live version on the held-out window; adds the checks."""
    checks = report.checks
    try:
        live_folder = registry.path(live)
        live_end = registry.manifest(live).data_window.end_ms
    except FunnelError as exc:
        checks.append(Check("live", False, detail=f"live version {live} unreadable: {exc}"))
        return
    inter = Interactions.from_table(events, IdMap(bundle.users.keys), IdMap(bundle.items.keys))
    start = window_start(inter.timestamp, live_end, config.holdout)
    split = split_at(inter, start)
    rows = split.test_users
    report.window = {
        "start_ms": start,
        "end_ms": int(inter.timestamp.max()),
        "live_data_end_ms": live_end,
        "n_newer_events": int(np.sum(inter.timestamp > live_end)) if live_end is not None else len(inter),
        "n_users": len(rows),
        "n_events": int(split.test.nnz),
    }
    if len(rows) < config.min_window_users:
        detail = (
            f"only {len(rows)} user(s) have held-out events (the latest {config.holdout:.0%} of the events "
            f"after the live version's data, {_iso(live_end or 0)}); the gate needs "
            f"{config.min_window_users} to compare NDCG@{k}: retrain after more events, or force"
        )
        checks.append(Check("window", False, float(len(rows)), float(config.min_window_users), None, detail))
        return
    checks.append(Check("window", True, float(len(rows)), float(config.min_window_users)))
    rows = _sample(rows, config.max_users, config.seed)
    user_ids = inter.users.keys_of(rows)
    test, vectors = split.test[rows], split.train.T.tocsr()
    scratch = registry.root / f".gate-{bundle.version}"
    try:
        ts = pc.cast(events.column("timestamp"), pa.int64())
        t0 = time.perf_counter()
        shadow(events.filter(pc.less_equal(ts, start)), scratch)
        report.window["shadow_fit_seconds"] = round(time.perf_counter() - t0, 3)
        cand = gate_eval.served_lists(gate_eval.open_version(scratch), user_ids, k, inter.items)
    except (FunnelError, ValueError) as exc:
        checks.append(
            Check("shadow", False, detail=f"could not refit the candidate before the window: {exc}")
        )
        return
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    fresh = gate_eval.records_of(events, user_ids, int(live_end or 0), start) if live_end is not None else []
    old = gate_eval.served_lists(gate_eval.open_version(live_folder), user_ids, k, inter.items, fresh)
    report.candidate = gate_eval.list_metrics(cand, test, vectors, n_listed)
    report.live = gate_eval.list_metrics(old, test, vectors, n_listed)
    c, v = report.candidate["ndcg"], report.live["ndcg"]
    floor = config.ndcg_floor(v)
    ok = c >= floor - 1e-12
    detail = (
        ""
        if ok
        else (
            f"NDCG@{k} {c:.4f} regresses on the held-out window: live {live} has {v:.4f}, "
            f"floor {floor:.4f} (tolerance {config.ndcg_tolerance:.0%})"
        )
    )
    checks.append(Check("ndcg", ok, c, floor, v, detail))
    for name in ("coverage", "diversity"):
        floor_abs, drop = getattr(config, f"min_{name}"), getattr(config, f"max_{name}_drop")
        checks.append(_floor_check(name, report.candidate[name], floor_abs, report.live[name], drop))
