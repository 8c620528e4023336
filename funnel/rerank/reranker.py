"""``ReRanker``: turns one scored slate into a page — filters, boosts, diversity, slots, explanations.

The steps (see :mod:`funnel.rerank.state` for the three phases) come from a
:class:`~funnel.rerank.config.RerankConfig` or are passed directly. Page assembly picks, position
by position, the eligible unplaced candidate with the best value
``(1 − λ) · rel − λ · penalty`` that every step admits (exploration may take a pool item instead);
it records in the traces which step moved an item: ``diversity`` when MMR promoted it over the most
relevant admitted item, and the constraint step (``caps``, ``sponsored``) that kept the best
unconstrained item out of a position. Duplicate candidates keep their first occurrence (trace
``input``). Given the same inputs and a generator seeded alike, the page is the same.

Example:
    >>> import pyarrow as pa
    >>> from funnel.rerank.config import RerankConfig
    >>> items = pa.table({"item_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"],
    ...                   "categories": [["x"], ["x"], ["y"], ["x"]],
    ...                   "attributes": [None, None, None, '{"age_rating": "18+"}']})
    >>> rr = ReRanker(RerankConfig(mmr_lambda=0.5, explore_rate=0.0), ItemPolicyTable.from_catalogue(items))
    >>> page = rr.rerank(Slate(np.arange(4), np.array([0.9, 0.8, 0.7, 1.0])),
    ...                  UserContext(age_bucket="13-17", seen=[]), PageRequest(k=3), np.random.default_rng(0))
    >>> page.items.tolist(), [r.text for r in page.reasons], page.propensity.tolist()
    ([0, 2, 1], ['Picked for you', 'Picked for you', 'Picked for you'], [1.0, 1.0, 1.0])
    >>> page.trace[1].to_dict()["removed"]
    {3: 'age'}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from funnel.rerank.config import RerankConfig
from funnel.rerank.context import Page, PageRequest, Slate, StepTrace, UserContext
from funnel.rerank.items import ItemPolicyTable
from funnel.rerank.state import BaseStep, RerankState, RerankStep

_NEG = -np.inf


class ReRanker:
    """Re-ranks scored slates against one item table.

    Args:
        config: the settings (default :class:`RerankConfig`).
        table: the item side, built once (:meth:`ItemPolicyTable.from_catalogue`).
        steps: explicit steps, overriding ``config.steps``.
    """

    def __init__(
        self,
        config: RerankConfig | None,
        table: ItemPolicyTable,
        steps: Sequence[RerankStep] | None = None,
    ) -> None:
        self.config = config or RerankConfig()
        self.table = table
        self.steps = list(steps) if steps is not None else self.config.build_steps()
        self._constraints = [s for s in self.steps if _overrides(s, "allowed")]
        self._trackers = [s for s in self.steps if _overrides(s, "placed")]

    def rerank(
        self,
        slate: Slate,
        user: UserContext | None = None,
        request: PageRequest | None = None,
        rng: np.random.Generator | None = None,
    ) -> Page:
        """The page of ``request.k`` items (fewer only when too few are eligible) for one request."""
        user = user if user is not None else UserContext()
        request = request if request is not None else PageRequest()
        n_items = len(self.table)
        if len(slate) and (slate.items.min() < 0 or slate.items.max() >= n_items):
            raise IndexError(f"slate item indices must be in [0, {n_items})")
        state = RerankState.start(self.table, slate, user, request, rng)
        _drop_duplicates(state)
        for step in self.steps:
            step.prepare(state)
        propensity, explored = self._assemble(state)
        placed = np.asarray(state.placed, np.int64)
        page = Page(
            items=state.items[placed],
            scores=state.score[placed],
            reasons=[],
            propensity=np.asarray(propensity),
            explored=np.asarray(explored, bool),
            sponsored=self.table.sponsored[state.items[placed]],
            trace=[state.traces.get(s.name) or StepTrace(s.name) for s in self.steps],
        )
        if "input" in state.traces:
            page.trace.insert(0, state.traces["input"])
        for step in self.steps:
            step.finish(state, page)
        return page

    def _assemble(self, state: RerankState) -> tuple[list[float], list[bool]]:
        # rel: relevance in [0, 1], -inf once a candidate is ineligible or placed (so argmax skips it)
        w = state.diversity_weight
        finite = _relevance(state.score, state.alive)
        rel = np.where(state.alive, finite, _NEG)
        base = np.where(state.alive, (1 - w) * finite, _NEG) if w > 0 else rel
        plan = state.exploration
        propensity: list[float] = []
        explored: list[bool] = []
        for position in range(state.request.k if len(rel) else 0):
            value = rel if w == 0 else base - w * state.penalty
            masks = [
                (step, m) for step in self._constraints if (m := step.allowed(state, position)) is not None
            ]
            admitted = None
            for _, m in masks:
                admitted = m if admitted is None else admitted & m
            exploit = int((value if admitted is None else np.where(admitted, value, _NEG)).argmax())
            if value[exploit] == _NEG or (admitted is not None and not admitted[exploit]):
                break  # nothing eligible is admitted here: the page ends
            pick, p, was_explored = exploit, 1.0, False
            if plan is not None:
                pick, p, was_explored = plan.choose(position, value, admitted, exploit)
            if masks:
                self._attribute_block(state, masks, value, exploit)
            if w > 0:
                best_rel = int((rel if admitted is None else np.where(admitted, rel, _NEG)).argmax())
                if rel[exploit] < rel[best_rel]:
                    state.trace("diversity").moved.append(int(state.items[exploit]))
            if was_explored:
                state.trace("exploration").inserted.append(int(state.items[pick]))
            rel[pick] = base[pick] = _NEG
            state.placed.append(pick)
            propensity.append(p)
            explored.append(was_explored)
            for step in self._trackers:
                step.placed(state, position, pick)
        return propensity, explored

    @staticmethod
    def _attribute_block(
        state: RerankState, masks: list[tuple[RerankStep, np.ndarray]], value: np.ndarray, exploit: int
    ) -> None:
        """Record the constraint step that kept the best eligible item out of this position, if any."""
        best = int(value.argmax())
        if best != exploit:
            blocker = next((step for step, m in masks if not m[best]), None)
            if blocker is not None:
                state.trace(blocker.name).moved.append(int(state.items[best]))


def _overrides(step: RerankStep, hook: str) -> bool:
    """Whether ``step`` has its own ``hook`` (not :class:`BaseStep`'s no-op)."""
    own = getattr(type(step), hook, None)
    return own is not None and own is not getattr(BaseStep, hook)


def _relevance(score: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Scores min-max scaled to ``[0, 1]`` over the ``alive`` candidates (0 when they all tie)."""
    if not alive.any():
        return np.zeros_like(score)
    lo, hi = score[alive].min(), score[alive].max()
    return (score - lo) / (hi - lo) if hi > lo else np.zeros_like(score)


def _drop_duplicates(state: RerankState) -> None:
    """Keep the first occurrence of each item in the slate."""
    items = state.items
    order, keys = state.sorted_items()
    dup = np.zeros(len(items), bool)
    dup[order[1:]] = keys[1:] == keys[:-1]
    if dup.any():
        state.alive &= ~dup
        state.trace("input").remove(items[dup], "duplicate")
