"""The closed loop, one simulated day at a time: serve, respond, log, fold in, retrain.

:func:`prepare` builds the world (:mod:`funnel.simulation.world`) and a trained engine in a data
directory: the catalogue published before day 0, every user, the history before day 0, and the
first model (the full pipeline, ``SimConfig.ranking()``), forced live.

:func:`run` then loops over the days. Each day: the population's visits
(:mod:`funnel.simulation.population`), in time order, in batches of ``batch_size`` users; per
batch, items published by then are added (:meth:`Backend.add_items`), users who left are dropped,
the backend serves one page each, the users answer per the ground truth at their visit's time
(:mod:`funnel.simulation.behaviour`), impressions and clicks go through the write path and are
folded into the serving state before the next batch. At the day's end background churn applies,
the day's metrics are computed (:mod:`funnel.simulation.metrics`), and every ``retrain_days``
days the worker's retrain runs. Randomness: ``SeedSequence(seed)`` spawned per purpose (visits,
clicks, churn) per day, so days and scenarios draw independently of each other's outcomes where
they can; the engine's own randomness (exploration) is seeded by user and time.

Example:
    >>> import tempfile
    >>> from funnel.simulation.config import Scenario, SimConfig
    >>> cfg = SimConfig(users=60, days=1, n_items=80, history_per_user=10, total=50, n_estimators=5)
    >>> result = simulate(cfg, Scenario(retrain_days=0), tempfile.mkdtemp())
    >>> [sorted(d)[:3] for d in result.days], result.days[0]["pages"] > 0
    ([['active_users', 'category_entropy', 'clicks']], True)
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from funnel.data.synthetic.config import DAY_MS
from funnel.engine import Engine
from funnel.simulation.backend import Backend, InProcess
from funnel.simulation.behaviour import Behaviour
from funnel.simulation.config import Scenario, SimConfig
from funnel.simulation.metrics import DayAccumulator, ReachTracker, day_metrics, item_categories
from funnel.simulation.population import Population
from funnel.simulation.world import World, build_world, truth_index
from funnel.training.gates import GateConfig

log = logging.getLogger(__name__)
TRAIN_MODEL = "als"
"""The baseline trained beside the pipeline (named: the ``auto`` selection is skipped, see docs)."""


@dataclass
class SimResult:
    """One scenario's run: daily metrics, the run's summary, retrain outcomes and timings (seconds)."""

    scenario: Scenario
    days: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def prepare(config: SimConfig, scenario: Scenario, data_dir: str | Path) -> tuple[World, Engine]:
    """The world and an engine over ``data_dir`` trained on its history (module docstring)."""
    world = build_world(config, scenario)
    engine = Engine(data_dir, served_feature_sample=0.0)
    engine.import_items(world.initial_items())
    engine.import_users(world.users)
    engine.import_interactions(world.history)
    engine.train(model=TRAIN_MODEL, ranking=config.ranking(), force=True)
    return world, engine


def simulate(
    config: SimConfig,
    scenario: Scenario,
    data_dir: str | Path,
    gate: GateConfig | None = None,
) -> SimResult:
    """Prepare a trained engine in ``data_dir`` and run ``scenario`` on it in process."""
    started = time.perf_counter()
    world, engine = prepare(config, scenario, data_dir)
    try:
        setup = time.perf_counter() - started
        result = run(
            config, scenario, world, InProcess(engine, scenario.overrides(), gate, not scenario.gate)
        )
    finally:
        engine.close()
    result.timings["setup"] = setup
    return result


def simulate_many(
    config: SimConfig,
    scenarios: list[Scenario],
    data_dir: str | Path,
    gate: GateConfig | None = None,
) -> list[SimResult]:
    """Run ``scenarios`` side by side on the same seed, each in ``data_dir/<name>``.

    Scenarios sharing a world (same ``new_items_per_day`` and ``cold_user_share``) share its
    preparation: the first one's trained directory is copied for the others before any runs, so
    every scenario starts from the same model and the initial training is paid once per world.
    """
    root = Path(data_dir)
    prepared: dict[tuple[float, float], tuple[World, Path, float]] = {}
    for s in scenarios:
        key = (s.new_items_per_day, s.cold_user_share)
        if key not in prepared:
            started = time.perf_counter()
            world, engine = prepare(config, s, root / s.name)
            engine.close()
            prepared[key] = (world, root / s.name, time.perf_counter() - started)
        elif not (root / s.name).exists():
            shutil.copytree(prepared[key][1], root / s.name)
    results = []
    for s in scenarios:
        world, _, setup = prepared[(s.new_items_per_day, s.cold_user_share)]
        engine = Engine(root / s.name, served_feature_sample=0.0)
        try:
            result = run(config, s, world, InProcess(engine, s.overrides(), gate, not s.gate))
        finally:
            engine.close()
        result.timings["setup"] = setup
        results.append(result)
    return results


def _consumed(world: World) -> list[list[int]]:
    """Per user, the items of their positive history (the engine's seen items at day 0)."""
    t = world.history
    bad = np.isin(t.column("type").to_numpy(zero_copy_only=False), ["skip", "not_interested", "dislike"])
    users = truth_index(t.column("user_id").to_pylist(), "u")[~bad]
    items = truth_index(t.column("item_id").to_pylist())[~bad]
    out: list[list[int]] = [[] for _ in range(world.truth.n_users)]
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        out[u].append(i)
    return out


def run(config: SimConfig, scenario: Scenario, world: World, backend: Backend) -> SimResult:
    """Simulate ``config.days`` days of ``scenario`` against ``backend``; see the module docstring."""
    truth, k = world.truth, config.page_size
    pop = Population(truth, world.start_ms, config.visits_per_day)
    behaviour = Behaviour(truth, scenario.fatigue, scenario.leave_rate)
    categories = item_categories(truth.item_categories)
    reach = ReachTracker(truth.item_published_ms, world.start_ms)
    consumed = _consumed(world)
    user_ids = [f"u{u:06d}" for u in range(truth.n_users)]
    available = truth.item_published_ms < world.start_ms
    result = SimResult(scenario, [])
    timings = {"serve": 0.0, "write": 0.0, "respond": 0.0, "retrain": 0.0, "items": 0.0}
    for day, seq in enumerate(np.random.SeedSequence([config.seed, 1]).spawn(config.days)):
        visit_rng, click_rng, churn_rng = (np.random.default_rng(s) for s in seq.spawn(3))
        d0 = world.start_ms + day * DAY_MS
        who, when = pop.visits(day, visit_rng)
        acc = DayAccumulator()
        left_today = 0
        for lo in range(0, len(who), config.batch_size):
            users, times = who[lo : lo + config.batch_size], when[lo : lo + config.batch_size]
            clock = time.perf_counter()
            fresh = np.flatnonzero(~available & (truth.item_published_ms <= times.max()))
            if len(fresh):
                available[fresh] = True
                backend.add_items(world.items.take(pa.array(fresh)))
            timings["items"] += time.perf_counter() - clock
            here = (pop.left_ms[users] < 0) | (pop.left_ms[users] > times)
            users, times = users[here], times[here]
            if not len(users):
                continue
            clock = time.perf_counter()
            served = backend.recommend([user_ids[u] for u in users.tolist()], k)
            timings["serve"] += time.perf_counter() - clock
            clock = time.perf_counter()
            pages = np.full((len(users), k), -1, dtype=np.int64)
            for r, page in enumerate(served):
                idx = truth_index(page.items[:k])
                pages[r, : len(idx)] = idx
            response = behaviour.respond(users, times, pages, click_rng)
            expected = behaviour.expected(users, times, pages).sum(axis=1)
            oracle = behaviour.oracle(
                users, times, k, available, [np.asarray(consumed[u], np.int64) for u in users.tolist()]
            )
            acc.add(users, times, pages, response.clicked, expected, oracle)
            reach.add(pages.ravel(), int(times.max()))
            impressions, clicks = [], []
            for r, (u, t) in enumerate(zip(users.tolist(), times.tolist(), strict=True)):
                request = f"s{day:03d}-{lo + r:07d}"
                shown = served[r]
                n = min(k, len(shown.items))
                impressions.append({
                    "request_id": request, "user_id": user_ids[u], "item_ids": shown.items[:n],
                    "positions": list(range(n)), "timestamp": t, "surface": "home",
                    "arm": scenario.name, "propensities": shown.propensities[:n],
                })  # fmt: skip
                for pos in np.flatnonzero(response.clicked[r]).tolist():
                    item = int(pages[r, pos])
                    consumed[u].append(item)
                    clicks.append({
                        "event_id": f"{request}-{pos}", "user_id": user_ids[u], "item_id": shown.items[pos],
                        "type": "click", "timestamp": t + 1000 * (pos + 1), "request_id": request,
                        "position": pos,
                    })  # fmt: skip
            gone = users[response.left]
            pop.leave(gone, times[response.left])
            left_today += len(np.unique(gone))
            timings["respond"] += time.perf_counter() - clock
            clock = time.perf_counter()
            backend.write(impressions, clicks)
            timings["write"] += time.perf_counter() - clock
        d1 = d0 + DAY_MS
        left_today += len(pop.churn(day, scenario.daily_churn, churn_rng))
        row = day_metrics(
            day, acc, categories, truth.item_published_ms, available,
            pop.retention(d1), left_today, reach.hours(d0, d1),
        )  # fmt: skip
        result.days.append(row)
        log.info("simulated day %d: %s", day, row)
        if scenario.retrain_days and (day + 1) % scenario.retrain_days == 0 and day + 1 < config.days:
            clock = time.perf_counter()
            outcome = backend.retrain()
            timings["retrain"] += time.perf_counter() - clock
            result.retrains.append({"after_day": day, **outcome})
    result.summary = _summary(result.days, reach)
    result.timings.update(timings)
    return result


def _summary(days: list[dict[str, Any]], reach: ReachTracker) -> dict[str, Any]:
    """Run totals: pages, clicks, CTR, final retention, first/last-week entropy, new-item reach."""
    pages = sum(d["pages"] for d in days)
    slots = sum(d["slots"] for d in days)
    clicks = sum(d["clicks"] for d in days)
    week = min(7, len(days))

    def mean(key: str, rows: list[dict[str, Any]]) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None]
        return float(f"{np.mean(vals):.9g}") if vals else None

    return {
        "pages": pages,
        "clicks": clicks,
        "ctr": float(f"{clicks / slots:.9g}") if slots else None,
        "retention": days[-1]["retention"] if days else None,
        "entropy_first_week": mean("category_entropy", days[:week]),
        "entropy_last_week": mean("category_entropy", days[-week:]),
        "coverage": mean("coverage", days),
        "regret": mean("regret", days),
        "new_item_click_share": mean("new_item_click_share", days),
        **reach.summary(),
    }
