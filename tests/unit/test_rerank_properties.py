"""Property-based tests of the re-ranking stage: random catalogues, slates, users, requests and configs.

Every page is checked against an independent oracle written here from the rules in plain Python
(it never calls the re-ranking code): hard policy (unlisted, age, region, not-interested items
and creators, seen, shown, excluded, category filter), sponsored positions and count, creator /
category caps and category runs, no duplicates, and the page length.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from funnel.core.schema import ITEMS
from funnel.rerank import (
    DEFAULT_STEPS,
    ItemPolicyTable,
    PageRequest,
    RerankConfig,
    ReRanker,
    Slate,
    UserContext,
)

COUNTRIES = ["US", "FR", "JP"]
RATINGS = [None, "all", "13+", "18+"]
RATING_AGE = {None: 0, "all": 0, "13+": 13, "18+": 18}
BUCKETS = [None, "13-17", "18-24", "55+"]
BUCKET_AGE = {None: 0, "13-17": 13, "18-24": 18, "55+": 55}
DAY = 86_400_000
NOW = 1_767_225_600_000


@dataclass
class Case:
    items: list[dict]
    slate: list[int]
    scores: list[float]
    seen: list[int]
    not_interested: list[int]
    ni_creators: list[str]
    age_bucket: str | None
    country: str | None
    cold: bool
    k: int
    exclude: list[int]
    category_filter: list[str] | None
    shown: list[int]
    config: RerankConfig
    seed: int


@st.composite
def items_strategy(draw: st.DrawFn, n_creators: int, n_categories: int) -> list[dict]:
    n = draw(st.integers(15, 50) if draw(st.integers(0, 3)) else st.integers(1, 15))
    out = []
    for _ in range(n):
        cats = draw(st.lists(st.integers(0, n_categories - 1), max_size=2, unique=True))
        out.append(
            {
                "listed": draw(st.integers(0, 9)) > 0,
                "rating": draw(st.sampled_from([*RATINGS, "all", "all"])),
                "regions": draw(st.lists(st.sampled_from(COUNTRIES), max_size=2, unique=True))
                if draw(st.integers(0, 3)) == 0
                else [],
                "sponsored": draw(st.integers(0, 4)) == 0,
                "categories": [f"cat{c}" for c in cats],
                "creator": draw(st.one_of(st.none(), st.integers(0, n_creators - 1).map(lambda c: f"cr{c}"))),
                "age_days": draw(st.one_of(st.none(), st.floats(0, 30))),
                "impressions": draw(st.integers(0, 300)),
            }
        )
    return out


def subset(draw: st.DrawFn, n: int, max_size: int = 10) -> list[int]:
    return draw(st.lists(st.integers(0, n - 1), max_size=max_size)) if n else []


@st.composite
def cases(draw: st.DrawFn, seen_mode: str = "exclude", caps: bool = True, distinct: bool = False) -> Case:
    n_creators, n_categories = (60, 60) if distinct else (draw(st.integers(1, 6)), draw(st.integers(1, 5)))
    items = draw(items_strategy(n_creators, n_categories))
    n = len(items)
    slate = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n))  # duplicates allowed
    slate += draw(st.permutations(range(n))) if draw(st.booleans()) else []  # often the whole catalogue
    scores = draw(st.lists(st.floats(-5, 5), min_size=len(slate), max_size=len(slate)))
    cap = st.one_of(st.none(), st.integers(1, 3)) if caps else st.none()
    steps = list(DEFAULT_STEPS)
    random.Random(draw(st.integers(0, 10**6))).shuffle(steps)  # hard filters must hold in any order
    config = RerankConfig(
        steps=tuple(steps),
        seen_mode=seen_mode,
        mmr_lambda=draw(st.floats(0, 1)),
        freshness_boost=draw(st.floats(0, 2)),
        max_per_creator=draw(cap),
        max_per_category=draw(cap),
        caps_top_n=draw(st.integers(1, 15)),
        max_consecutive=draw(cap),
        sponsored_positions=tuple(draw(st.lists(st.integers(0, 15), max_size=4))),
        sponsored_max=draw(st.integers(0, 3)),
        sponsored_top_n=draw(st.integers(1, 15)),
        explore_rate=draw(st.sampled_from([0.0, 0.3, 1.0])),
        explore_rate_cold=draw(st.sampled_from([0.0, 0.5, 1.0])),
        explore_pool_size=draw(st.integers(1, 10)),
        thompson_draws=draw(st.integers(1, 16)),
    )
    return Case(
        items=items,
        slate=slate,
        scores=scores,
        seen=subset(draw, n, 5),
        not_interested=subset(draw, n, 3),
        ni_creators=draw(
            st.lists(st.sampled_from([f"cr{c}" for c in range(n_creators)]), max_size=n_creators // 3)
        ),
        age_bucket=draw(st.sampled_from(BUCKETS)),
        country=draw(st.sampled_from([None, "DE", *COUNTRIES])),
        cold=draw(st.booleans()),
        k=draw(st.integers(1, 8) if draw(st.booleans()) else st.integers(1, 15)),
        exclude=subset(draw, n, 3),
        category_filter=None
        if draw(st.integers(0, 3))
        else draw(
            st.lists(st.sampled_from([f"cat{c}" for c in range(n_categories)]), min_size=1, max_size=3)
        ),
        shown=subset(draw, n, 5),
        config=config,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def catalogue(items: list[dict]) -> pa.Table:
    n = len(items)
    published = [None if it["age_days"] is None else int(NOW - it["age_days"] * DAY) for it in items]
    return pa.Table.from_pydict(
        {
            "item_id": [f"i{j}" for j in range(n)],
            "title": [f"T{j}" for j in range(n)],
            "description": [None] * n,
            "categories": [it["categories"] for it in items],
            "tags": [None] * n,
            "creator_id": [it["creator"] for it in items],
            "published_at": pa.array(published, pa.int64()).cast(pa.timestamp("ms", "UTC")),
            "status": ["listed" if it["listed"] else "unlisted" for it in items],
            "attributes": [
                json.dumps(
                    {"age_rating": it["rating"], "regions": it["regions"], "sponsored": it["sponsored"]}
                )
                for it in items
            ],
        },
        schema=ITEMS,
    )


def run(case: Case):
    table = ItemPolicyTable.from_catalogue(catalogue(case.items))
    table = table.with_feedback(
        np.array([it["impressions"] for it in case.items], float), np.zeros(len(case.items))
    )
    user = UserContext(
        seen=case.seen,
        not_interested=case.not_interested,
        not_interested_creators=table.creator_codes(case.ni_creators),
        age_bucket=case.age_bucket,
        country=case.country,
        cold=case.cold,
    )
    cats = None if case.category_filter is None else table.category_codes(case.category_filter)
    request = PageRequest(k=case.k, exclude=case.exclude, categories=cats, shown=case.shown, now_ms=NOW)
    slate = Slate(np.array(case.slate, np.int64), np.array(case.scores))
    return ReRanker(case.config, table).rerank(slate, user, request, np.random.default_rng(case.seed))


# ---- the oracle: the rules, item by item, from the raw case ---------------------------------------------


def eligible(case: Case, j: int, check_seen: bool = True) -> bool:
    it = case.items[j]
    if not it["listed"] or RATING_AGE[it["rating"]] > BUCKET_AGE[case.age_bucket]:
        return False
    if it["regions"] and case.country not in it["regions"]:
        return False
    if j in case.not_interested or j in case.exclude or j in case.shown:
        return False
    if it["creator"] is not None and it["creator"] in case.ni_creators:
        return False
    if check_seen and j in case.seen:
        return False
    return case.category_filter is None or bool(set(it["categories"]) & set(case.category_filter))


def check_page(case: Case, page, check_seen: bool = True) -> None:
    items = page.items.tolist()
    cfg = case.config
    assert len(items) == len(set(items)), "duplicates on the page"
    assert len(items) <= case.k
    assert set(items) <= set(case.slate)
    for j in items:
        assert eligible(case, j, check_seen), f"item {j} violates a hard rule: {case.items[j]}"
    # sponsored: allowed positions, count in the top N
    spons = [p for p, j in enumerate(items) if case.items[j]["sponsored"]]
    assert all(p in cfg.sponsored_positions for p in spons)
    assert sum(p < cfg.sponsored_top_n for p in spons) <= cfg.sponsored_max
    assert page.sponsored.tolist() == [case.items[j]["sponsored"] for j in items]
    # caps
    top = items[: cfg.caps_top_n]
    for key, cap in (("creator", cfg.max_per_creator), ("primary", cfg.max_per_category)):
        if cap is None:
            continue
        values = [case.items[j]["creator"] if key == "creator" else primary(case, j) for j in top]
        counts: dict = {}
        for v in values:
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        assert max(counts.values(), default=0) <= cap, (key, counts, cap)
    if cfg.max_consecutive is not None:
        run, prev = 0, object()
        for j in items:
            c = primary(case, j)
            run = run + 1 if c == prev and c is not None else 1
            prev = c
            assert c is None or run <= cfg.max_consecutive
    # exploration and propensities
    p = page.propensity
    assert len(p) == len(items) and ((p > 0) & (p <= 1 + 1e-12)).all()
    assert not (page.explored & page.sponsored).any()
    assert len(page.reasons) == len(items) and all(r.text for r in page.reasons)


def primary(case: Case, j: int) -> str | None:
    cats = case.items[j]["categories"]
    return cats[0] if cats else None


def distinct_organic(case: Case, pool: list[int]) -> int:
    """A greedy lower bound on the most eligible organic items, pairwise distinct in creator and category."""
    creators, cats, count = set(), set(), 0
    for j in pool:
        it = case.items[j]
        c, g = it["creator"], primary(case, j)
        if it["sponsored"] or (c is not None and c in creators) or (g is not None and g in cats):
            continue
        creators.add(c) if c is not None else None
        cats.add(g) if g is not None else None
        count += 1
    return count


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases())
def test_hard_rules_slots_and_caps_always_hold(case: Case):
    page = run(case)
    check_page(case, page)
    pool = sorted({j for j in case.slate if eligible(case, j)})
    assert len(page) <= min(case.k, len(pool))
    enough = 2 * case.k <= distinct_organic(case, pool)  # enough eligible items: caps can never block
    event(f"enough eligible items for a full page: {enough}; page full: {len(page) == case.k}")
    if enough:
        assert len(page) == case.k


@SETTINGS
@given(cases(caps=False))
def test_page_is_never_short_without_caps(case: Case):
    page = run(case)
    check_page(case, page)
    event(f"explored: {bool(page.explored.any())}, sponsored: {bool(page.sponsored.any())}")
    pool = {j for j in case.slate if eligible(case, j)}
    event(f"eligible items: {'0' if not pool else '1-5' if len(pool) <= 5 else '6+'}")
    organic = [j for j in pool if not case.items[j]["sponsored"]]
    assert min(case.k, len(organic)) <= len(page) <= min(case.k, len(pool))


@settings(max_examples=100, deadline=None)
@given(cases(distinct=True))
def test_full_pages_with_many_creators_and_categories(case: Case):
    page = run(case)
    check_page(case, page)
    pool = sorted({j for j in case.slate if eligible(case, j)})
    enough = 2 * case.k <= distinct_organic(case, pool)
    event(f"enough eligible items for a full page: {enough}")
    if enough:
        assert len(page) == case.k


@SETTINGS
@given(cases(seen_mode="decay"))
def test_decay_mode_reshows_seen_items_but_keeps_every_other_rule(case: Case):
    page = run(case)
    check_page(case, page, check_seen=False)


@settings(max_examples=50, deadline=None)
@given(cases())
def test_same_seed_same_page(case: Case):
    a, b = run(case), run(case)
    assert a.items.tolist() == b.items.tolist()
    assert a.propensity.tolist() == b.propensity.tolist()
