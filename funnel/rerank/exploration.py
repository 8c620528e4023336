"""Exploration slots: Thompson sampling over new or under-exposed items, with logged propensities.

Each position of the page is an *exploration slot* with probability ``rate`` (``rate_cold`` for
cold users), independently — so the slots sit at random positions and their share is ``rate`` in
expectation. The *exploration pool* is the eligible organic candidates that are new (published
within ``new_days``) or under-exposed (fewer than ``max_impressions`` impressions) and not among
the ``k`` best-scored eligible candidates (the page shows those anyway): the ``pool_size``
best-scored of them. Each pool item's click rate has the posterior
``Beta(prior_clicks + clicks, prior_impressions − prior_clicks + impressions − clicks)``.

At an exploration slot the item is the arg-max of one column of ``draws`` posterior samples
(``[pool, draws]``, drawn once per request) picked uniformly — i.e. one Thompson sample — among
the pool items every constraint admits at that position. Its probability given the items above is
then exactly ``π(i) = (columns won by i) / draws``, and every position logs

    propensity(i) = (1 − ε) · [i is the exploit choice] + ε · π(i),

with ``ε = rate`` when some pool item is admitted at the position (else 0): the probability that
the policy put ``i`` there given the items above it. Over the candidates it sums to 1 per position.

Example:
    >>> import pyarrow as pa
    >>> from funnel.rerank.context import PageRequest, Slate, UserContext
    >>> from funnel.rerank.items import ItemPolicyTable
    >>> from funnel.rerank.state import RerankState
    >>> t = ItemPolicyTable.from_catalogue(pa.table({"item_id": ["a", "b", "c"]}))
    >>> t = t.with_feedback(np.array([1000.0, 0, 0]), np.array([50.0, 0, 0]))
    >>> st = RerankState.start(t, Slate(np.arange(3), np.array([3.0, 2, 1])), UserContext(), PageRequest(k=2),
    ...                        np.random.default_rng(0))
    >>> ExplorationSlots(rate=1.0).prepare(st)
    >>> st.exploration.pool.tolist()    # a has enough impressions; a, b are the top 2 anyway
    [2]
    >>> pick, propensity, explored = st.exploration.choose(0, np.zeros(3), None, 0)
    >>> pick, propensity, explored
    (2, 1.0, True)
"""

from __future__ import annotations

import numpy as np

from funnel.core.errors import ConfigError
from funnel.rerank.state import BaseStep, RerankState

DAY_MS = 86_400_000


class ExplorationPlan:
    """One request's exploration: which positions explore, the pool, and lazily drawn posterior samples.

    Attributes:
        slots: ``bool [k]`` exploration slots; rate: ``ε`` of this request; pool: candidate indices.
    """

    def __init__(
        self, slots: np.ndarray, rate: float, pool: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
        n_candidates: int, draws: int, rng: np.random.Generator,
    ) -> None:  # fmt: skip
        self.slots, self.rate, self.pool = slots, rate, pool
        self._alpha, self._beta, self._n_draws, self._rng = alpha, beta, draws, rng
        self._samples: np.ndarray | None = None
        self._pi: dict[bytes, np.ndarray] = {}  # win probabilities by admitted pool (a page repeats them)
        self._slot_of = np.full(n_candidates, -1, np.int64)
        self._slot_of[pool] = np.arange(len(pool))

    def _draws(self) -> np.ndarray:
        if self._samples is None:
            size = (len(self.pool), self._n_draws)
            self._samples = self._rng.beta(self._alpha[:, None], self._beta[:, None], size=size)
        return self._samples

    def win_probabilities(self, ok: np.ndarray) -> np.ndarray:
        """``π`` over the pool: the share of posterior draws each pool item in ``ok`` wins (0 for others).

        Memoised per ``ok``: it changes only when a pool item is placed or a constraint turns.
        """
        key = ok.tobytes()
        pi = self._pi.get(key)
        if pi is None:
            draws = self._draws()
            winners = np.where(ok[:, None], draws, -1.0).argmax(axis=0)
            pi = self._pi[key] = np.bincount(winners, minlength=len(self.pool)) / draws.shape[1]
            pi.flags.writeable = False  # shared by the positions that ask with the same pool
        return pi

    def choose(
        self, position: int, value: np.ndarray, admitted: np.ndarray | None, exploit: int
    ) -> tuple[int, float, bool]:
        """The candidate for ``position`` and its propensity.

        Args:
            position: 0-based position on the page.
            value: the page's values (``-inf`` for ineligible or placed candidates).
            admitted: the constraints' mask at ``position`` (``None`` = no constraint).
            exploit: the candidate the page takes when it does not explore.

        Returns ``(candidate, propensity, explored)``.
        """
        if self.rate == 0:
            return exploit, 1.0, False
        explore = position < len(self.slots) and bool(self.slots[position])
        ok = value[self.pool] > -np.inf
        if admitted is not None:
            ok &= admitted[self.pool]
        if not ok.any():
            return exploit, 1.0, False
        slot = self._slot_of[exploit]
        if not explore and slot < 0:
            return exploit, 1.0 - self.rate, False
        pi = self.win_probabilities(ok)
        if explore:
            column = int(self._rng.integers(self._n_draws))
            winner = int(np.where(ok, self._draws()[:, column], -1.0).argmax())
            pick = int(self.pool[winner])
            return pick, float(self.rate * pi[winner] + (1 - self.rate) * (pick == exploit)), True
        return exploit, float((1 - self.rate) + self.rate * pi[slot]), False


class ExplorationSlots(BaseStep):
    """Makes each request's :class:`ExplorationPlan` (see the module docstring for the parameters)."""

    name = "exploration"

    def __init__(
        self,
        rate: float = 0.03,
        rate_cold: float = 0.10,
        max_impressions: float = 100.0,
        new_days: float = 7.0,
        pool_size: int = 32,
        prior_clicks: float = 1.0,
        prior_impressions: float = 20.0,
        draws: int = 64,
    ) -> None:
        if not (0 <= rate <= 1 and 0 <= rate_cold <= 1):
            raise ConfigError(f"exploration rates must be in [0, 1], got {rate}, {rate_cold}")
        if pool_size < 1 or draws < 1 or not 0 < prior_clicks < prior_impressions:
            raise ConfigError("need pool_size >= 1, draws >= 1 and 0 < prior_clicks < prior_impressions")
        self.rate, self.rate_cold = rate, rate_cold
        self.max_impressions, self.new_days = max_impressions, new_days
        self.pool_size, self.draws = pool_size, draws
        self.prior_clicks, self.prior_impressions = prior_clicks, prior_impressions

    def prepare(self, state: RerankState) -> None:
        """Draw the exploration slots and choose the pool."""
        rate = self.rate_cold if state.user.cold else self.rate
        t, items = state.table, state.items
        slots = state.rng.random(state.request.k) < rate
        published = t.published_ms[items]
        fresh = (published > np.iinfo(np.int64).min) & (published >= state.now_ms() - self.new_days * DAY_MS)
        imp = t.impressions[items]
        candidates = state.alive & ~t.sponsored[items] & (fresh | (imp < self.max_impressions))
        eligible = np.flatnonzero(state.alive)
        k = state.request.k
        if len(eligible) <= k:
            candidates[:] = False
        else:
            candidates[eligible[np.argpartition(-state.score[eligible], k - 1)[:k]]] = False
        pool = np.flatnonzero(candidates)
        if len(pool) > self.pool_size:
            best = np.argpartition(-state.score[pool], self.pool_size - 1)[: self.pool_size]
            pool = np.sort(pool[best])
        clicks = t.clicks[items[pool]]
        alpha = self.prior_clicks + clicks
        beta = self.prior_impressions - self.prior_clicks + imp[pool] - clicks
        n = len(items)
        state.exploration = ExplorationPlan(slots, rate, pool, alpha, beta, n, self.draws, state.rng)
        state.trace(self.name).notes.update(rate=rate, slots=np.flatnonzero(slots).tolist(), pool=len(pool))
