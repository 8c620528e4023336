"""Draw the hidden world: categories, creators, items and users with their latent tastes.

Items are indexed in order of publication (so "items published by ``t``" is a prefix, which makes
time-aware sampling a ``searchsorted``). Every other item property is drawn independently of that
order. Users get segments (country, age bucket, device); country and age shift the category prior
a user's taste mixture is drawn from, so segments carry signal for cold-start models.
"""

from __future__ import annotations

import numpy as np

from funnel.data.synthetic.config import DAY_MS, SyntheticConfig
from funnel.data.synthetic.truth import GroundTruth

SECOND_CATEGORY_RATE = 0.3
"""Share of items with a second category."""
PRIMARY_FROM_CREATOR = 0.85
"""Probability that an item's primary category is its creator's home category."""
AGE_RATING_P = (0.8, 0.15, 0.05)
"""Probabilities of the age ratings ``all``, ``13+``, ``18+``."""
REGIONAL_RATE = 0.15
"""Share of items available in one country only."""
SPONSORED_RATE = 0.03
"""Share of sponsored items."""


def _zipf_weights(n: int, power: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** power
    return w / w.sum()


def _unit_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Rows with i.i.d. N(0, 1/dim) entries: norm ~1, random pairs near-orthogonal."""
    return rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[-1]))


def _times_before(rng: np.random.Generator, start_ms: int, n: int, mean_days: float) -> np.ndarray:
    back = np.minimum(rng.exponential(mean_days * DAY_MS, n), 10 * 365 * DAY_MS)
    return start_ms - 1 - back


def _mixtures(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of ``alpha`` (via normalised Gamma variables)."""
    g = rng.standard_gamma(alpha) + 1e-12
    return (g / g.sum(axis=1, keepdims=True)).astype(np.float32)


def _items(cfg: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    K, D, n, C = cfg.n_categories, cfg.dim, cfg.n_items, cfg.creators
    cat_weight = _zipf_weights(K, 0.6)[rng.permutation(K)]
    cat_f = _unit_normal(rng, (K, D))
    creator_home = rng.choice(K, C, p=cat_weight)
    creator_f = _unit_normal(rng, (C, D))
    creator_q = rng.standard_normal(C).astype(np.float32)
    creator_w = rng.pareto(1.5, C) + 1.0
    creator = rng.choice(C, n, p=creator_w / creator_w.sum()).astype(np.int32)
    own = rng.random(n) < PRIMARY_FROM_CREATOR
    primary = np.where(own, creator_home[creator], rng.choice(K, n, p=cat_weight))
    second = rng.choice(K, n, p=cat_weight)
    second = np.where((rng.random(n) < SECOND_CATEGORY_RATE) & (second != primary), second, -1)
    has2 = (second >= 0).astype(np.float32)[:, None]
    centre = (cat_f[primary] + 0.6 * has2 * cat_f[np.maximum(second, 0)]) / np.sqrt(1 + 0.36 * has2)
    factors = centre + 0.4 * creator_f[creator] + 0.5 * _unit_normal(rng, (n, D))
    z = rng.standard_normal(n).astype(np.float32)
    bias = cfg.quality_std * (0.8 * z + 0.6 * creator_q[creator])
    noise = rng.standard_normal(n)
    popularity = np.exp(cfg.popularity_skew * (0.5 * z + np.sqrt(0.75) * noise))
    new = rng.random(n) < cfg.new_item_fraction
    inside = cfg.start_ms + rng.random(n) * (cfg.end_ms - cfg.start_ms)
    published = np.sort(np.where(new, inside, _times_before(rng, cfg.start_ms, n, 365.0)))
    regional = rng.random(n) < REGIONAL_RATE
    return {
        "category_factors": cat_f,
        "creator_factors": creator_f,
        "item_factors": factors.astype(np.float32),
        "item_bias": bias.astype(np.float32),
        "item_popularity": (popularity / popularity.mean()).astype(np.float32),
        "item_published_ms": np.floor(published).astype(np.int64),
        "item_categories": np.stack([primary, second], axis=1).astype(np.int32),
        "item_creator": creator,
        "item_age_rating": rng.choice(3, n, p=AGE_RATING_P).astype(np.int8),
        "item_region": np.where(regional, rng.integers(0, len(cfg.countries), n), -1).astype(np.int16),
        "item_sponsored": rng.random(n) < SPONSORED_RATE,
        "category_weight": cat_weight,
    }


def _users(
    cfg: SyntheticConfig, rng: np.random.Generator, cat_f: np.ndarray, cat_weight: np.ndarray
) -> dict[str, np.ndarray]:
    K, D, n = cfg.n_categories, cfg.dim, cfg.n_users
    nc, na, nd = len(cfg.countries), len(cfg.age_buckets), len(cfg.devices)
    country = rng.choice(nc, n, p=_zipf_weights(nc, 0.8)).astype(np.int16)
    age = rng.choice(na, n, p=rng.dirichlet(np.full(na, 4.0))).astype(np.int16)
    device = rng.choice(nd, n, p=_zipf_weights(nd, 1.0)).astype(np.int16)
    country_logit = rng.normal(0.0, 0.8, (nc, K))
    age_logit = rng.normal(0.0, 0.8, (na, K))
    prior = np.empty((n, K), dtype=np.float64)
    block = 1 << 16
    for lo in range(0, n, block):
        sl = slice(lo, lo + block)
        logit = np.log(cat_weight) + country_logit[country[sl]] + age_logit[age[sl]]
        e = np.exp(logit - logit.max(axis=1, keepdims=True))
        prior[sl] = e / e.sum(axis=1, keepdims=True)
    alpha = cfg.taste_concentration * K * prior
    del prior
    pi0 = _mixtures(rng, alpha)
    pi1 = (1 - cfg.drift) * pi0 + cfg.drift * _mixtures(rng, alpha)
    del alpha
    keep = 1.0 - cfg.drift
    eps0 = 1.5 * _unit_normal(rng, (n, D))
    eps1 = keep * eps0 + np.sqrt(1.0 - keep**2) * 1.5 * _unit_normal(rng, (n, D))
    s = np.float32(cfg.taste_strength)
    new = rng.random(n) < cfg.new_user_fraction
    inside = cfg.start_ms + rng.random(n) * 0.9 * (cfg.end_ms - cfg.start_ms)
    created = np.where(new, inside, _times_before(rng, cfg.start_ms, n, 400.0))
    return {
        "user_factors_start": (s * (pi0 @ cat_f) + eps0).astype(np.float32),
        "user_factors_end": (s * (pi1 @ cat_f) + eps1).astype(np.float32),
        "user_category_start": pi0,
        "user_category_end": pi1.astype(np.float32),
        "user_country": country,
        "user_age_bucket": age,
        "user_device": device,
        "user_created_ms": np.floor(created).astype(np.int64),
        "user_activity": rng.lognormal(0.0, cfg.activity_sigma, n).astype(np.float32),
    }


def build_truth(
    cfg: SyntheticConfig, item_rng: np.random.Generator, user_rng: np.random.Generator
) -> GroundTruth:
    """Draw the world of ``cfg`` (items from ``item_rng``, users from ``user_rng``)."""
    items = _items(cfg, item_rng)
    cat_weight = items.pop("category_weight")
    users = _users(cfg, user_rng, items["category_factors"], cat_weight)
    positions = np.arange(cfg.slate_size, dtype=np.float32)
    return GroundTruth(
        start_ms=cfg.start_ms,
        end_ms=cfg.end_ms,
        **users,
        **items,
        position_bias=(1.0 / (1.0 + positions) ** cfg.position_bias_power).astype(np.float32),
        device_completion_shift=np.linspace(-0.2, 0.4, len(cfg.devices)).astype(np.float32),
        click_offset=float(cfg.click_offset),
        freshness_boost=float(cfg.freshness_boost),
        freshness_halflife_ms=float(cfg.freshness_halflife_days * DAY_MS),
    )
