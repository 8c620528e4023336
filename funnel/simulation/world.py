"""The simulated world: the synthetic generator's ground truth over history + simulated days.

:func:`build_world` draws one :class:`~funnel.data.synthetic.GroundTruth` whose window spans the
history (``history_days`` before day 0) *and* the simulated days, so the users' tastes keep
drifting (linearly, start taste → end taste) through the run. Items published after day 0 are the
run's arrivals: the generator spreads ``new_item_fraction`` of the catalogue uniformly over the
window, and that fraction is set so ``Scenario.new_items_per_day`` arrive per simulated day.
``Scenario.cold_user_share`` of the users are moved to arrive during the run (no history: cold).
The history the first model learns from is the generator's logging policy sampled up to day 0
only (``sessions.simulate`` with the window cut at day 0), so nothing after day 0 leaks into it.

Randomness: ``SeedSequence(seed).spawn`` per purpose (items, users, text, history, arrivals), as
:func:`funnel.data.synthetic.generate` does, so a world is a pure function of its config.

Example:
    >>> from funnel.simulation.config import Scenario, SimConfig
    >>> w = build_world(SimConfig(users=40, days=2, n_items=60, history_per_user=5), Scenario())
    >>> w.history.num_rows > 0, w.truth.n_users, int((w.truth.user_created_ms >= w.start_ms).sum())
    (True, 40, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.synthetic.catalog import items_table, users_table
from funnel.data.synthetic.config import DAY_MS, DEFAULT_END_MS, SyntheticConfig
from funnel.data.synthetic.sessions import simulate
from funnel.data.synthetic.tables import interactions_table, make_ids
from funnel.data.synthetic.truth import GroundTruth
from funnel.data.synthetic.world import build_truth
from funnel.simulation.config import Scenario, SimConfig

START_MS = DEFAULT_END_MS
"""Day 0 of every simulation: 2026-01-01T00:00:00Z."""


@dataclass
class World:
    """The truth, the catalogue and users as tables (row ``j`` = truth index ``j``), the history.

    ``start_ms`` is day 0; ``items`` holds every item (arrivals included: import a row only once
    its ``published_at`` has come, see :meth:`arrivals`); ``history`` the interactions before day 0.
    """

    truth: GroundTruth
    items: pa.Table
    users: pa.Table
    history: pa.Table
    start_ms: int
    days: int

    def initial_items(self) -> pa.Table:
        """Catalogue rows published before day 0."""
        return self.items.filter(pc.less(self._published(), self.start_ms))

    def arrivals(self, after_ms: int, until_ms: int) -> np.ndarray:
        """Truth indices of items published in ``[after_ms, until_ms)`` (in index order)."""
        pub = self.truth.item_published_ms
        return np.flatnonzero((pub >= after_ms) & (pub < until_ms))

    def _published(self) -> pa.Array:
        return self.items.column("published_at").cast(pa.int64())


def world_config(config: SimConfig, scenario: Scenario) -> SyntheticConfig:
    """The synthetic generator's config of this world (window: history + simulated days)."""
    start = START_MS - config.history_days * DAY_MS
    end = START_MS + config.days * DAY_MS
    window_days = config.history_days + config.days
    new_fraction = min(1.0, scenario.new_items_per_day * window_days / config.n_items)
    history = max(1, int(config.history_per_user * config.users))
    return SyntheticConfig(
        n_users=config.users,
        n_items=config.n_items,
        n_interactions=history,
        start_ms=start,
        end_ms=end,
        new_item_fraction=new_fraction,
        new_user_fraction=0.0,
        seed=config.seed,
    )


def build_world(config: SimConfig, scenario: Scenario) -> World:
    """Draw the world of ``config`` with the scenario's arrivals; see the module docstring."""
    cfg = world_config(config, scenario)
    item_seq, user_seq, text_seq, history_seq, arrival_seq = np.random.SeedSequence(config.seed).spawn(5)
    truth = build_truth(cfg, np.random.default_rng(item_seq), np.random.default_rng(user_seq))
    rng = np.random.default_rng(arrival_seq)
    n = truth.n_users
    cold = rng.permutation(n)[: round(scenario.cold_user_share * n)]
    created = np.minimum(truth.user_created_ms, START_MS - 1)
    created[cold] = START_MS + (rng.random(len(cold)) * config.days * DAY_MS).astype(np.int64)
    truth = replace(truth, user_created_ms=created.astype(np.int64))
    items, users = items_table(cfg, truth, np.random.default_rng(text_seq)), users_table(cfg, truth)
    log = simulate(truth, replace(cfg, end_ms=START_MS), np.random.default_rng(history_seq))
    user_ids, item_ids = make_ids("u", truth.n_users), make_ids("i", truth.n_items)
    request_ids = make_ids("h", max(log.n_sessions, 1), 7)
    history = interactions_table(log, user_ids, item_ids, request_ids)
    history = history.filter(pc.less(history.column("timestamp").cast(pa.int64()), START_MS))
    arriving = pc.is_in(history.column("user_id"), value_set=user_ids.take(pa.array(cold, pa.int64())))
    history = history.filter(pc.invert(arriving))  # arrivals have no history (the generator's edge case)
    return World(truth, items, users, history, START_MS, config.days)


def truth_index(ids: list[str], prefix: str = "i") -> np.ndarray:
    """Truth indices of synthetic ids (``i000123`` -> 123, ``prefix="u"`` for users); ``-1`` otherwise."""
    out = np.full(len(ids), -1, dtype=np.int64)
    for j, key in enumerate(ids):
        if key[:1] == prefix and key[1:].isdigit():
            out[j] = int(key[1:])
    return out
