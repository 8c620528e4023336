"""Off-policy estimates of a deterministic target policy's click rate per slot, from logged slots.

The logged bandit (:func:`funnel.experiments.logged_bandit.logged_slots`) has, per impressed slot
``i``, the context ``x_i`` (user, page, position ``p_i``), the item ``a_i`` shown with the logging
propensity ``μ_i`` and the click ``r_i``. A *target* policy is given as the item ``t_i`` it would
put at position ``p_i`` in the same context (None when its page is shorter). It is deterministic,
so ``π_i = 1[t_i = a_i]`` and the weight is ``w_i = π_i / μ_i``. :func:`evaluate` returns the
IPS, SNIPS and doubly-robust estimates of ``V = mean_i E[r | x_i, t_i at p_i]`` — the target's
click rate over the logged contexts and positions — with their ``1 − alpha`` normal intervals
(:mod:`funnel.experiments.off_policy`), beside the logging policy's own click rate.

**Assumptions** (what makes the estimates unbiased):

1. *Slots are independent rounds*: a slot's click depends on the user, the item and the position,
   not on the other items of the page.
2. *The logged propensity is the probability of that item in that slot given the context.* The
   engine logs it given the items above (:mod:`funnel.rerank.exploration`): exact at the top
   position, and below it whenever the items above were the policy's deterministic picks; an
   approximation after an exploration pick above. ``max_position`` keeps the top positions only.
3. *Support*: every item the target would place has a positive logging propensity in that slot.
   Only exploration gives it: without exploration the estimates see only the slots where the two
   policies agree. ``matched`` (slots where ``t_i = a_i``) and the effective sample size say how
   much the estimate rests on.

**DR's reward model** ``q̂(a, p) = b_p · L_a`` (position click rate × the item's smoothed lift over
the click rate its positions predict) is fitted on the other half of the pages (cross-fitting by
a hash of the request id), so its errors do not correlate with the row's own reward.

Example:
    >>> import numpy as np
    >>> mu, r = np.array([0.5, 0.5, 0.5, 0.5]), np.array([1.0, 0, 0, 1])
    >>> result = evaluate(np.array(["a", "b", "a", "b"]), np.array([0, 0, 0, 0]), mu, r,
    ...                   np.array(["a", "a", "b", "b"]), np.array(["r1", "r2", "r3", "r4"]))
    >>> result.matched, result.estimates["ips"].value, result.estimates["snips"].value   # w = 2, 0, 0, 2
    (2, 1.0, 1.0)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from funnel.core.errors import ValidationError
from funnel.experiments.off_policy import OpeEstimate, doubly_robust, ips, snips

SMOOTHING = 5.0
"""Pseudo-impressions pulling the reward model's per-item lift towards 1 (and position rates to the mean)."""


@dataclass(frozen=True)
class OpeResult:
    """The estimates of one target policy and what they rest on.

    Attributes:
        estimates: ``ips``, ``snips``, ``dr`` -> :class:`OpeEstimate`. slots: Logged slots used.
        matched: Slots where the target picks the logged item. logging_ctr: The logged click rate,
            with its normal interval ``logging_ci``. alpha: Level of the intervals.
        notes: Caveats found in the data (no exploration, few matches, ...).
    """

    estimates: dict[str, OpeEstimate]
    slots: int
    matched: int
    logging_ctr: float
    logging_ci: tuple[float, float]
    alpha: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "slots": self.slots, "matched": self.matched, "alpha": self.alpha,
            "logging": {"ctr": self.logging_ctr, "ci": list(self.logging_ci)},
            "estimates": {
                name: {"value": e.value, "stderr": e.stderr, "ci": list(e.ci),
                       "effective_sample_size": e.effective_sample_size}
                for name, e in self.estimates.items()
            },
            "notes": list(self.notes),
        }  # fmt: skip

    def format(self) -> str:
        """A small text table: one line per estimator with its interval."""
        level = f"{100 * (1 - self.alpha):g}%"
        lines = [
            f"slots {self.slots}, target picks the logged item in {self.matched}",
            f"{'':8}{'CTR':>9}  {level + ' interval':>22}  {'ESS':>8}",
            f"{'logging':8}{self.logging_ctr:9.4f}  [{self.logging_ci[0]:9.4f}, {self.logging_ci[1]:9.4f}]",
        ]
        for name, e in self.estimates.items():
            lines.append(
                f"{name:8}{e.value:9.4f}  [{e.ci[0]:9.4f}, {e.ci[1]:9.4f}]  {e.effective_sample_size:8.1f}"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def evaluate(
    items: np.ndarray, positions: np.ndarray, propensities: np.ndarray, rewards: np.ndarray,
    target_items: np.ndarray, request_ids: np.ndarray, *, alpha: float = 0.05,
) -> OpeResult:  # fmt: skip
    """IPS, SNIPS and DR estimates of the target (``target_items``, one per logged slot); see the module."""
    n = len(items)
    if n < 2:
        raise ValidationError(f"need at least 2 logged slots, got {n}", field="slots")
    if not 0 < alpha < 1:
        raise ValidationError(f"must be in (0, 1), got {alpha}", field="alpha")
    match = np.array([t is not None and t == a for t, a in zip(target_items, items, strict=True)])
    pi = match.astype(np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    estimates = {"ips": ips(r, propensities, pi, alpha=alpha)}
    notes = []
    if match.any():
        estimates["snips"] = snips(r, propensities, pi, alpha=alpha)
    else:
        notes.append("the target never picks the logged item: no SNIPS; IPS is 0 and DR is the model's")
    q_logged, q_target = _reward_model(items, positions, r, target_items, request_ids)
    estimates["dr"] = doubly_robust(r, propensities, pi, q_logged, q_target, alpha=alpha)
    if np.all(np.asarray(propensities) >= 1.0):
        notes.append("every logged propensity is 1 (no exploration): only slots where both agree count")
    if 0 < match.sum() < 30:
        notes.append(f"only {int(match.sum())} matched slots: the intervals are rough")
    ctr = float(r.mean())
    half = float(stats.norm.ppf(1 - alpha / 2)) * math.sqrt(ctr * (1 - ctr) / n)
    return OpeResult(estimates, n, int(match.sum()), ctr, (ctr - half, ctr + half), alpha, notes)


def _reward_model(
    items: np.ndarray, positions: np.ndarray, rewards: np.ndarray, target: np.ndarray, request_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted ``q̂`` of the logged item and of the target's item at each slot (0 for an empty slot)."""
    fold = np.array([hashlib.blake2b(str(r).encode(), digest_size=1).digest()[0] & 1 for r in request_ids])
    q_logged = np.zeros(len(items))
    q_target = np.zeros(len(items))
    for f in (0, 1):
        train, rows = fold != f, fold == f
        if not rows.any():
            continue
        predict = _fit(items[train], positions[train], rewards[train])
        q_logged[rows] = [predict(a, p) for a, p in zip(items[rows], positions[rows], strict=True)]
        q_target[rows] = [
            0.0 if t is None else predict(t, p) for t, p in zip(target[rows], positions[rows], strict=True)
        ]
    return q_logged, q_target


def _fit(items: np.ndarray, positions: np.ndarray, rewards: np.ndarray) -> Any:
    """``q̂(a, p) = b_p · L_a``: smoothed click rate per position times the item's smoothed lift."""
    mean = float(rewards.mean()) if len(rewards) else 0.0
    base: dict[int, float] = {}
    for p in np.unique(positions).tolist():
        at = positions == p
        base[p] = (float(rewards[at].sum()) + SMOOTHING * mean) / (int(at.sum()) + SMOOTHING)
    clicks: dict[Any, float] = {}
    expected: dict[Any, float] = {}
    for a, p, r in zip(items.tolist(), positions.tolist(), rewards.tolist(), strict=True):
        clicks[a] = clicks.get(a, 0.0) + r
        expected[a] = expected.get(a, 0.0) + base[p]

    def predict(item: Any, position: int) -> float:
        b = base.get(int(position), mean)
        if b <= 0:
            return 0.0
        lift = (clicks.get(item, 0.0) + SMOOTHING * b) / (expected.get(item, 0.0) + SMOOTHING * b)
        return min(1.0, b * lift)

    return predict
