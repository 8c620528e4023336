"""``Behaviour``: how simulated users answer a page, from the ground truth at the time they see it.

A slot at position ``pos`` holding item ``i`` is clicked with probability::

    truth.click_probability(affinity(u, i, t), pos) * (1 - fatigue) ** n

where ``affinity`` is the truth's (drifting tastes, item quality, freshness), the position bias is
the truth's examination curve, and ``n`` counts the earlier impressions of ``i`` to ``u`` (pages
that show the same thing again wear it out). A page without any click disappoints: the user leaves
for good with probability ``leave_rate``.

:meth:`Behaviour.oracle` is the benchmark the regret is measured against: the ``k`` items of the
highest true affinity at ``t`` among those published, allowed by policy (region, age rating) and
not consumed yet, placed best first (which maximises the expected clicks under a decreasing
position bias), scored without fatigue like the served page it is compared with.

Example:
    >>> import numpy as np
    >>> from funnel.data.synthetic import SyntheticConfig, generate
    >>> truth = generate(SyntheticConfig(n_users=5, n_items=20, n_interactions=50)).truth
    >>> b = Behaviour(truth, fatigue=0.5, leave_rate=0.0)
    >>> page = np.array([[3, 4, -1]])
    >>> p1 = b.probabilities(np.array([0]), np.array([truth.end_ms]), page)
    >>> _ = b.respond(np.array([0]), np.array([truth.end_ms]), page, np.random.default_rng(0))
    >>> p2 = b.probabilities(np.array([0]), np.array([truth.end_ms]), page)
    >>> bool(np.allclose(p2[0, :2], p1[0, :2] * 0.5)), float(p1[0, 2])
    (True, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from funnel.data.synthetic.truth import GroundTruth


@dataclass
class Response:
    """Answers to a batch of pages: ``clicked`` slots, their click ``probability``, who ``left``."""

    clicked: np.ndarray
    probability: np.ndarray
    left: np.ndarray


class Behaviour:
    """Click, fatigue and leave model over one truth (see the module docstring)."""

    def __init__(
        self, truth: GroundTruth, fatigue: float, leave_rate: float, minor_ages: tuple[int, ...] = (0,)
    ):
        self.truth, self.fatigue, self.leave_rate = truth, float(fatigue), float(leave_rate)
        self.shown: dict[int, int] = {}
        """Impressions so far per ``user * n_items + item``."""
        self.minor = np.isin(truth.user_age_bucket, minor_ages)

    def _keys(self, users: np.ndarray, pages: np.ndarray) -> np.ndarray:
        return users[:, None].astype(np.int64) * self.truth.n_items + np.maximum(pages, 0)

    def expected(self, users: np.ndarray, times: np.ndarray, pages: np.ndarray) -> np.ndarray:
        """Click probability per slot without fatigue (0 for padding ``-1``)."""
        valid = pages >= 0
        u = np.repeat(users, pages.shape[1])
        t = np.repeat(times, pages.shape[1])
        aff = self.truth.affinity_pairs(u, np.maximum(pages, 0).ravel(), t).reshape(pages.shape)
        pos = np.broadcast_to(np.arange(pages.shape[1]), pages.shape)
        return np.where(valid, self.truth.click_probability(aff, pos), 0.0)

    def probabilities(self, users: np.ndarray, times: np.ndarray, pages: np.ndarray) -> np.ndarray:
        """Click probability per slot, fatigue included."""
        p = self.expected(users, times, pages)
        if self.fatigue > 0:
            seen = np.array([self.shown.get(k, 0) for k in self._keys(users, pages).ravel().tolist()])
            p = p * (1.0 - self.fatigue) ** seen.reshape(pages.shape)
        return p

    def respond(
        self, users: np.ndarray, times: np.ndarray, pages: np.ndarray, rng: np.random.Generator
    ) -> Response:
        """Draw clicks and departures for ``pages`` (one row per user, ``-1`` pads); count impressions."""
        p = self.probabilities(users, times, pages)
        clicked = (rng.random(pages.shape) < p) & (pages >= 0)
        for key in self._keys(users, pages)[pages >= 0].tolist():
            self.shown[key] = self.shown.get(key, 0) + 1
        left = ~clicked.any(axis=1) & (rng.random(len(users)) < self.leave_rate)
        return Response(clicked, p, left)

    def oracle(
        self,
        users: np.ndarray,
        times: np.ndarray,
        k: int,
        available: np.ndarray,
        consumed: list[np.ndarray],
    ) -> np.ndarray:
        """Expected clicks of the oracle's page per user (see the module docstring).

        ``available``: mask of catalogue items servable now; ``consumed``: per user, items excluded.
        """
        t = self.truth
        uf = t.user_factors(users, times)
        scores = uf @ t.item_factors.T + t.item_bias
        scores += t.freshness(np.arange(t.n_items), times[:, None].astype(np.float64))
        bad = ~available[None, :] | (
            (t.item_region >= 0)[None, :] & (t.item_region[None, :] != t.user_country[users, None])
        )
        bad |= self.minor[users, None] & (t.item_age_rating >= 2)[None, :]
        scores[bad] = -np.inf
        rows = np.repeat(np.arange(len(users)), [len(c) for c in consumed])
        if len(rows):
            scores[rows, np.concatenate(consumed)] = -np.inf
        kk = min(k, scores.shape[1])
        top = -np.sort(-np.partition(scores, -kk, axis=1)[:, -kk:], axis=1)
        pos = np.broadcast_to(np.arange(kk), top.shape)
        p = np.where(np.isfinite(top), t.click_probability(np.where(np.isfinite(top), top, 0.0), pos), 0.0)
        return p.sum(axis=1)
