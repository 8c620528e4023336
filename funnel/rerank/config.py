"""``RerankConfig``: which re-ranking steps run, in which order, with which settings.

Example:
    >>> cfg = RerankConfig(mmr_lambda=0.5, steps=("seen", "policy", "diversity"))
    >>> [type(s).__name__ for s in cfg.build_steps()]
    ['SeenFilter', 'PolicyFilter', 'MMRDiversifier']
    >>> RerankConfig(steps=("seen", "shuffle"))
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConfigError: unknown re-ranking step(s) ['shuffle']; known: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from funnel.core.errors import ConfigError
from funnel.rerank.diversity import DiversityCaps, MMRDiversifier
from funnel.rerank.explainer import Explainer
from funnel.rerank.exploration import ExplorationSlots
from funnel.rerank.filters import PolicyFilter, SeenFilter
from funnel.rerank.freshness import FreshnessBoost
from funnel.rerank.sponsored import SponsoredSlots
from funnel.rerank.state import RerankStep

DEFAULT_STEPS = (
    "seen",
    "policy",
    "freshness",
    "diversity",
    "caps",
    "sponsored",
    "exploration",
    "explanations",
)
"""The default order: hard filters first, then score changes, then the constraints of the page."""


@dataclass(frozen=True)
class RerankConfig:
    """Settings of every step (see each step's module); ``steps`` names the steps to run, in order.

    The order only changes the traces and which candidates exploration pools: hard filters hold in
    any order, since soft steps only ever choose among the candidates still eligible at assembly.

    ``mmr_lambda`` (the weight of MMR's similarity penalty, 0 = the ranker's order) defaults to 0.2,
    from the synthetic trade-off (``python -m benchmarks.rerank_tradeoff``: 6000 users, 3000 items,
    EASE slates of 100 re-ranked to 10, 3 seeds; ``benchmarks/results/rerank_tradeoff.json``):
    λ = 0.2 costs 1.0 % NDCG@10 (0.8–1.3 % per seed) for +30 % intra-list category diversity
    (0.286 → 0.373) and +39 % category entropy (0.60 → 0.83 bits); λ = 0.3 already costs 4.8 %,
    λ = 0.5 22 %. So 0.2 is the largest value of the grid within the 2 % budget.

    ``explore_rate`` (the chance each slot of a page for a user with a history is an exploration
    slot) defaults to 0.05, from the closed-loop sweep (``python -m benchmarks.simulate_sweep
    --users 500 --days 30 --items 400 --visits-per-day 0.5 --new-items-per-day 2``: weekly
    retraining, one seed; ``benchmarks/results/simulate_sweep.json``, docs/simulation.md). At 0 the
    loop narrows: CTR falls from 2.05 % (days 0-9) to 0.57 % (days 20-29) and new items get 0.46 %
    of the slots in the last ten days; at 0.05 CTR goes 1.89 % -> 0.74 % (the best of the grid late
    in the month, 132 clicks in the last ten days against 98), new items get 1.26 % of the slots and
    category entropy stays highest (2.53 bits). The price is early: 8 % lower CTR in the first ten
    days, 4.6 % fewer clicks over the 30 days, 6 % more regret against the oracle. 0.10 costs as
    much early without more late gain; 0.02 sits in between. One seed at small scale: differences
    of a 10-day window are 2-3 standard errors.

    Caps: only the creator cap (2 per creator in the top 20) is on by default. On the demo world
    (3000 users, 2000 items, the trained pipeline, 300 users, share of the top 10 in the true
    top 100 of the items policy allows: 0.629 with policy only) a creator cap of 2 costs 1.5 points,
    while a cap of 5 per category costs 12 and at most 3 consecutive from one category 3.5 — users
    there favour one or two categories, and MMR already spreads categories within its budget. Set
    ``max_per_category`` / ``max_consecutive`` for catalogues where a category monopoly is a
    product problem.
    """

    steps: tuple[str, ...] = DEFAULT_STEPS
    seen_mode: str = "exclude"
    seen_decay: float = 0.3
    seen_recovery_days: float = 30.0
    unknown_age_years: int = 0
    freshness_boost: float = 0.2
    freshness_days: float = 7.0
    mmr_lambda: float = 0.2
    use_embeddings: bool = True
    max_per_creator: int | None = 2
    max_per_category: int | None = None
    caps_top_n: int = 20
    max_consecutive: int | None = None
    sponsored_positions: tuple[int, ...] = (2, 9)
    sponsored_max: int = 2
    sponsored_top_n: int = 20
    explore_rate: float = 0.05
    explore_rate_cold: float = 0.10
    explore_max_impressions: float = 100.0
    explore_new_days: float = 7.0
    explore_pool_size: int = 32
    explore_prior_clicks: float = 1.0
    explore_prior_impressions: float = 20.0
    thompson_draws: int = 64

    def __post_init__(self) -> None:
        for name in ("steps", "sponsored_positions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = [s for s in self.steps if s not in STEP_BUILDERS]
        if unknown:
            raise ConfigError(f"unknown re-ranking step(s) {unknown}; known: {', '.join(STEP_BUILDERS)}")
        if len(set(self.steps)) != len(self.steps):
            raise ConfigError(f"a re-ranking step is listed twice: {self.steps}")
        self.build_steps()  # every step validates its own settings

    def build_steps(self) -> list[RerankStep]:
        """The configured steps, in order."""
        return [STEP_BUILDERS[name](self) for name in self.steps]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready); ``from_dict(to_dict())`` round-trips."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RerankConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ConfigError``."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"rerank: unknown config keys {sorted(unknown)}")
        return cls(**data)


STEP_BUILDERS: dict[str, Callable[[RerankConfig], RerankStep]] = {
    "seen": lambda c: SeenFilter(c.seen_mode, c.seen_decay, c.seen_recovery_days),
    "policy": lambda c: PolicyFilter(c.unknown_age_years),
    "freshness": lambda c: FreshnessBoost(c.freshness_boost, c.freshness_days),
    "diversity": lambda c: MMRDiversifier(c.mmr_lambda, c.use_embeddings),
    "caps": lambda c: DiversityCaps(c.max_per_creator, c.max_per_category, c.caps_top_n, c.max_consecutive),
    "sponsored": lambda c: SponsoredSlots(c.sponsored_positions, c.sponsored_max, c.sponsored_top_n),
    "exploration": lambda c: ExplorationSlots(
        c.explore_rate,
        c.explore_rate_cold,
        c.explore_max_impressions,
        c.explore_new_days,
        c.explore_pool_size,
        c.explore_prior_clicks,
        c.explore_prior_impressions,
        c.thompson_draws,
    ),
    "explanations": lambda c: Explainer(),
}
"""Step name -> how to build it from a config."""
