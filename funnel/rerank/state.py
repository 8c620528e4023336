"""The per-request working state of re-ranking and the :class:`RerankStep` protocol every step follows.

A request runs in three phases (see :class:`~funnel.rerank.reranker.ReRanker`):

1. ``prepare`` — every step in configured order: filters clear bits of ``state.alive`` (nothing ever
   sets one again), score steps change ``state.score``, the diversifier sets
   ``state.diversity_weight``, exploration sets ``state.exploration``;
2. page assembly — position by position, the item maximising
   ``(1 - w) · relevance − w · state.penalty`` among the alive, unplaced items that every step's
   ``allowed(state, position)`` mask admits (or, at an exploration slot, the plan's pick among
   them); then every step's ``placed`` hook sees the choice;
3. ``finish`` — every step may annotate the page (explanations).

So a soft step can only ever *choose among* eligible items: the hard filters hold whatever order
or settings the soft steps have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from funnel.rerank.context import Page, PageRequest, Slate, StepTrace, UserContext
from funnel.rerank.items import ItemPolicyTable

if TYPE_CHECKING:
    from funnel.rerank.exploration import ExplorationPlan


@dataclass
class RerankState:
    """One request in flight. Arrays are indexed by *candidate* (slate position), not by item index.

    Attributes:
        table, slate, user, request, rng: the inputs; items: ``slate.items``.
        alive: ``bool [n]`` eligible (cleared by filters only); score: ``float [n]`` adjusted scores.
        diversity_weight: MMR's ``λ`` (0 = pure relevance); penalty: ``float [n]`` running maximum
            similarity of each candidate to the placed items.
        exploration: the exploration plan, if a step made one; placed: candidate indices placed so far.
        traces: step name -> its :class:`StepTrace`; memo: per-request scratch space of the steps.
    """

    table: ItemPolicyTable
    slate: Slate
    user: UserContext
    request: PageRequest
    rng: np.random.Generator
    alive: np.ndarray
    score: np.ndarray
    diversity_weight: float = 0.0
    penalty: np.ndarray = field(default_factory=lambda: np.empty(0))
    exploration: ExplorationPlan | None = None
    placed: list[int] = field(default_factory=list)
    traces: dict[str, StepTrace] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        table: ItemPolicyTable,
        slate: Slate,
        user: UserContext,
        request: PageRequest,
        rng: np.random.Generator | None = None,
    ) -> RerankState:
        """A fresh state: every candidate alive, scores as given, no penalty."""
        n = len(slate)
        return cls(
            table, slate, user, request, rng if rng is not None else np.random.default_rng(0),
            alive=np.ones(n, bool), score=slate.scores.copy(), penalty=np.zeros(n),
        )  # fmt: skip

    @property
    def items(self) -> np.ndarray:
        """``int64 [n]`` item indices of the candidates."""
        return self.slate.items

    def sorted_items(self) -> tuple[np.ndarray, np.ndarray]:
        """``(order, items[order])``: the candidates by item index (stable), computed once."""
        if "sorted" not in self.memo:
            order = np.argsort(self.items, kind="stable")
            self.memo["sorted"] = (order, self.items[order])
        return self.memo["sorted"]

    def contains(self, values: np.ndarray) -> np.ndarray:
        """``bool [n]``: the candidates whose item is in ``values`` (first occurrence of a duplicate)."""
        out = np.zeros(len(self.items), bool)
        if len(values) and len(self.items):
            order, keys = self.sorted_items()
            pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
            out[order[pos[keys[pos] == values]]] = True
        return out

    def trace(self, step: str) -> StepTrace:
        """The trace of ``step`` (created on first use)."""
        if step not in self.traces:
            self.traces[step] = StepTrace(step)
        return self.traces[step]

    def remove(self, step: str, mask: np.ndarray, reason: str) -> None:
        """Make the candidates in ``mask`` ineligible, recording the newly removed ones under ``reason``."""
        new = mask & self.alive
        if new.any():
            self.alive &= ~mask
            self.trace(step).remove(self.items[new], reason)

    def now_ms(self) -> int:
        """The request time: ``request.now_ms``, else the newest publish time among the candidates."""
        if self.request.now_ms is not None:
            return int(self.request.now_ms)
        published = self.table.published_ms[self.items]
        known = published[published > np.iinfo(np.int64).min]
        return int(known.max()) if len(known) else 0


class RerankStep(Protocol):
    """A re-ranking step. Implement the hooks you need; :class:`BaseStep` gives no-op defaults."""

    name: str

    def prepare(self, state: RerankState) -> None:
        """Before assembly: filter, rescore, or set up per-request data in ``state.memo``."""

    def allowed(self, state: RerankState, position: int) -> np.ndarray | None:
        """``bool [n]`` of the candidates this step admits at ``position`` (``None`` = all)."""

    def placed(self, state: RerankState, position: int, candidate: int) -> None:
        """After ``candidate`` was placed at ``position``."""

    def finish(self, state: RerankState, page: Page) -> None:
        """After assembly: annotate ``page`` (e.g. its reasons)."""


class BaseStep:
    """No-op implementations of the :class:`RerankStep` hooks."""

    name = "step"

    def prepare(self, state: RerankState) -> None:
        """Do nothing."""

    def allowed(self, state: RerankState, position: int) -> np.ndarray | None:
        """Admit every candidate."""
        return None

    def placed(self, state: RerankState, position: int, candidate: int) -> None:
        """Do nothing."""

    def finish(self, state: RerankState, page: Page) -> None:
        """Do nothing."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def scale(scores: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
    """Multiply scores by ``factor`` in the sign-safe way: ``s·f`` for ``s >= 0``, ``s / f`` below 0.

    A factor above 1 then always raises a score and one below 1 always lowers it, also for rankers
    whose scores can be negative (e.g. EASE, dot products).

    >>> scale(np.array([2.0, -2.0]), 2.0).tolist()
    [4.0, -1.0]
    """
    return np.where(scores >= 0, scores * factor, scores / factor)
