"""``SyntheticConfig``: every knob of the synthetic world, JSON-serialisable and validated.

Times are UTC epoch milliseconds, like everywhere in funnel. The defaults describe a 90-day window
ending 2026-01-01T00:00:00Z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from funnel.core.errors import ConfigError

DAY_MS = 86_400_000
"""One day in milliseconds."""
DEFAULT_END_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Size, time window and behaviour of a synthetic dataset (see :func:`generate`).

    Sizes:
        n_users, n_items, n_categories, n_creators (``0`` = ``max(1, n_items // 10)``), dim
        (latent dimension), n_interactions (target; generation stops at the first session that
        reaches it, so the result is at most one session longer).
    Time:
        start_ms, end_ms (the window), new_item_fraction / new_user_fraction (published / created
        inside the window; the rest before it).
    Tastes:
        taste_strength (weight of the category mixture in the user vector), taste_concentration
        (Dirichlet concentration per category: small = few favourite categories), drift (0 = fixed
        tastes, 1 = a new taste by the end of the window), quality_std (item bias), freshness_boost
        and freshness_halflife_days (affinity bonus of recently published items).
    Exposure (the logging policy that serves slates):
        slate_size, source_mix (popularity, favourite categories, fresh, random), popularity_skew
        (sigma of the log-normal exposure prior), organic_rate (sessions where the user finds one
        item without a slate: a ``view`` with no request_id).
    Feedback:
        position_bias_power (examination probability ``1 / (1 + pos) ** power``), click_offset
        (click logit = affinity - click_offset), skip_rate, watch_rate, rating_rate, like_threshold
        (like logit = 2 * (click logit - like_threshold)), activity_sigma (log-normal spread of
        per-user session rates).
    Segments:
        countries, age_buckets (``minor_age_buckets`` never see ``18+`` items), devices.
    """

    n_users: int = 1_000
    n_items: int = 500
    n_interactions: int = 50_000
    n_categories: int = 20
    n_creators: int = 0
    dim: int = 32
    start_ms: int = DEFAULT_END_MS - 90 * DAY_MS
    end_ms: int = DEFAULT_END_MS
    new_item_fraction: float = 0.2
    new_user_fraction: float = 0.1
    taste_strength: float = 10.0
    taste_concentration: float = 0.1
    drift: float = 0.3
    quality_std: float = 0.5
    freshness_boost: float = 0.5
    freshness_halflife_days: float = 7.0
    slate_size: int = 10
    source_mix: tuple[float, float, float, float] = (0.35, 0.4, 0.1, 0.15)
    popularity_skew: float = 1.0
    organic_rate: float = 0.15
    position_bias_power: float = 0.8
    click_offset: float = 6.0
    skip_rate: float = 0.06
    watch_rate: float = 0.75
    rating_rate: float = 0.12
    like_threshold: float = 0.0
    activity_sigma: float = 1.2
    countries: tuple[str, ...] = ("US", "GB", "DE", "FR", "BR", "IN", "JP")
    age_buckets: tuple[str, ...] = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
    minor_age_buckets: tuple[str, ...] = ("13-17",)
    devices: tuple[str, ...] = ("mobile", "desktop", "tv")
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("countries", "age_buckets", "minor_age_buckets", "devices", "source_mix"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    @property
    def creators(self) -> int:
        """The effective number of creators (``n_creators`` or the default from ``n_items``)."""
        return self.n_creators or max(1, self.n_items // 10)

    def validate(self) -> None:
        """Raise ``ConfigError`` when a setting cannot work."""
        positive = ("n_users", "n_items", "n_interactions", "n_categories", "dim", "slate_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"synthetic: {name} must be >= 1")
        if self.n_categories > 10_000:
            raise ConfigError("synthetic: at most 10000 categories")
        if self.n_creators < 0:
            raise ConfigError("synthetic: n_creators must be >= 0 (0 = default)")
        if not 0 < self.start_ms < self.end_ms:
            raise ConfigError("synthetic: need 0 < start_ms < end_ms")
        if self.end_ms - self.start_ms < 3_600_000:
            raise ConfigError("synthetic: the window must last at least one hour")
        unit = ("new_item_fraction", "new_user_fraction", "drift", "organic_rate", "skip_rate")
        unit += ("watch_rate", "rating_rate")
        for name in unit:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"synthetic: {name} must be in [0, 1]")
        if len(self.source_mix) != 4 or min(self.source_mix) < 0 or sum(self.source_mix) <= 0:
            raise ConfigError("synthetic: source_mix needs 4 non-negative weights, not all zero")
        if self.taste_concentration <= 0 or self.freshness_halflife_days <= 0:
            raise ConfigError("synthetic: taste_concentration and freshness_halflife_days must be > 0")
        if not self.countries or not self.age_buckets or not self.devices:
            raise ConfigError("synthetic: countries, age_buckets and devices must not be empty")
        if len(self.countries) > 62:
            raise ConfigError("synthetic: at most 62 countries")
        if not set(self.minor_age_buckets) <= set(self.age_buckets):
            raise ConfigError("synthetic: minor_age_buckets must be among age_buckets")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready); ``from_dict(to_dict())`` round-trips."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ConfigError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"synthetic: unknown config keys {sorted(unknown)}")
        return cls(**data)
