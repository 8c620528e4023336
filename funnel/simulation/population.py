"""``Population``: who is around on a simulated day, how often they come, and who has left.

A user exists from ``truth.user_created_ms`` on (arrivals during the run are cold users) until
they leave: for good after a disappointing page (:mod:`funnel.simulation.behaviour` decides) or
by the background ``daily_churn``. An active user asks for ``Poisson(visits_per_day × activity)``
pages a day (``activity``: the truth's session rate over its mean, capped at 5 pages a day), at
uniform times within the part of the day they exist in.

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> truth = SimpleNamespace(user_created_ms=np.array([0, 0, 5_000]), user_activity=np.ones(3))
    >>> pop = Population(truth, start_ms=0, day_ms=10_000, visits_per_day=2.0)
    >>> users, times = pop.visits(0, np.random.default_rng(0))
    >>> bool((times[users == 2] >= 5_000).all()), pop.arrived(10_000).tolist()
    (True, [True, True, True])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funnel.data.synthetic.config import DAY_MS

MAX_VISITS_PER_DAY = 5
"""Cap on one user's pages a day (the activity prior is log-normal: a few users are very active)."""


class Population:
    """Arrival, visits and departures of the truth's users (see the module docstring)."""

    def __init__(self, truth: Any, start_ms: int, visits_per_day: float, day_ms: int = DAY_MS) -> None:
        self.created = np.asarray(truth.user_created_ms, dtype=np.int64)
        activity = np.asarray(truth.user_activity, dtype=np.float64)
        self.activity = activity / activity.mean()
        self.start_ms, self.day_ms, self.visits_per_day = int(start_ms), int(day_ms), float(visits_per_day)
        self.left_ms = np.full(len(self.created), -1, dtype=np.int64)
        """When each user left (``-1``: still here)."""

    @property
    def n_users(self) -> int:
        """Users in the population (arrived or not)."""
        return len(self.created)

    def arrived(self, until_ms: int) -> np.ndarray:
        """Mask of users created before ``until_ms``."""
        return self.created < until_ms

    def alive(self, at_ms: int) -> np.ndarray:
        """Mask of users who arrived before ``at_ms`` and had not left by then."""
        return self.arrived(at_ms) & ((self.left_ms < 0) | (self.left_ms > at_ms))

    def visits(self, day: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The day's page requests: user indices and times (ms), in time order."""
        d0 = self.start_ms + day * self.day_ms
        d1 = d0 + self.day_ms
        users = np.flatnonzero(self.alive(d0) | (self.arrived(d1) & (self.created >= d0)))
        lo = np.maximum(self.created[users], d0)
        share = (d1 - lo) / self.day_ms
        lam = self.visits_per_day * self.activity[users] * share
        counts = np.minimum(rng.poisson(lam), MAX_VISITS_PER_DAY)
        who = np.repeat(users, counts)
        start = np.repeat(lo, counts)
        times = start + (rng.random(len(who)) * (d1 - start)).astype(np.int64)
        order = np.lexsort((who, times))
        return who[order], times[order]

    def leave(self, users: np.ndarray, at_ms: np.ndarray | int) -> None:
        """Users leave at ``at_ms`` (those who already left keep their first departure)."""
        users = np.asarray(users, dtype=np.int64)
        at = np.broadcast_to(np.asarray(at_ms, dtype=np.int64), users.shape)
        order = np.lexsort((at, users))  # a user twice: the earliest departure
        users, at = users[order], at[order]
        first = np.concatenate([[True], users[1:] != users[:-1]]) if len(users) else np.zeros(0, bool)
        users, at = users[first], at[first]
        stay = self.left_ms[users] < 0
        self.left_ms[users[stay]] = at[stay]

    def churn(self, day: int, rate: float, rng: np.random.Generator) -> np.ndarray:
        """Background churn at the end of ``day``: each user still here leaves with ``rate``."""
        end = self.start_ms + (day + 1) * self.day_ms
        here = np.flatnonzero(self.alive(end - 1))
        gone = here[rng.random(len(here)) < rate]
        self.leave(gone, end - 1)
        return gone

    def retention(self, at_ms: int) -> float:
        """Users still here / users arrived, at ``at_ms`` (NaN before anyone arrived)."""
        arrived = int(self.arrived(at_ms).sum())
        return float(self.alive(at_ms).sum() / arrived) if arrived else float("nan")
