"""Re-ranking latency: one 1000-candidate slate to a 20-item page, single-threaded.

Run: ``python -m benchmarks.bench_rerank [--items 100000 --requests 2000 --candidates 1000 --k 20] [--quick]``

The catalogue is a NumPy world built as a canonical ``ITEMS`` table (50 categories, 5000 creators,
2 % unlisted, 10 % rated 13+ and 10 % 18+, 20 % licensed in one of 7 countries, 3 % sponsored,
publish dates over two years, impressions and clicks) and turned into an ``ItemPolicyTable`` once
(its build time is reported). Each request has a slate of ``--candidates`` distinct random items
with log-normal scores and mixed retrieval reasons, a user with 50–300 seen items (a tenth of them
in the slate), a few not-interested items and creators, a country and age bucket (10 % cold, 10 %
unknown age), and a next-page cursor on a quarter of the requests. Configurations: the default
(MMR over categories), the default with 64-d item embeddings, the filters only, and MMR λ = 0.
Each call to ``ReRanker.rerank`` is timed alone (wall and process CPU time) after a warm-up, with
BLAS limited to one thread; median and p99 go to ``benchmarks/results/rerank.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from benchmarks.common import machine_meta, print_table, write_results
from funnel.core.schema import ITEMS
from funnel.rerank import ItemPolicyTable, PageRequest, RerankConfig, ReRanker, Slate, UserContext

DAY = 86_400_000
END = 1_767_225_600_000
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "JP")
AGES = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
REASONS = np.array(["picked_for_you", "because_you_watched", "trending", "popular_in_segment", "new"], object)


def catalogue(n: int, rng: np.random.Generator) -> pa.Table:
    """A canonical items table of ``n`` items (attributes from a few hundred distinct JSON strings)."""
    rating = rng.choice(["all", "13+", "18+"], n, p=[0.8, 0.1, 0.1])
    region = np.where(rng.random(n) < 0.2, rng.integers(0, len(COUNTRIES), n), -1)
    sponsored = rng.random(n) < 0.03
    attrs = [
        json.dumps({"age_rating": a, "regions": [COUNTRIES[r]] if r >= 0 else [], "sponsored": bool(s)})
        for a, r, s in zip(rating, region, sponsored, strict=True)
    ]
    cats = rng.integers(0, 50, n)
    published = END - (730 * DAY * rng.random(n) ** 2).astype(np.int64)
    return pa.Table.from_pydict(
        {
            "item_id": [f"i{i:07d}" for i in range(n)],
            "title": [f"Title {i}" for i in range(n)],
            "description": pa.nulls(n, pa.string()),
            "categories": [[f"cat{c}"] for c in cats],
            "tags": pa.nulls(n, pa.list_(pa.string())),
            "creator_id": [f"c{c:05d}" for c in rng.integers(0, 5000, n)],
            "published_at": pa.array(published).cast(pa.timestamp("ms", "UTC")),
            "status": np.where(rng.random(n) < 0.02, "unlisted", "listed").tolist(),
            "attributes": attrs,
        },
        schema=ITEMS,
    )


def requests(
    n_items: int, n: int, n_cand: int, k: int, rng: np.random.Generator
) -> list[tuple[Slate, UserContext, PageRequest]]:
    """``n`` (slate, user, request) triples."""
    out = []
    for _ in range(n):
        items = rng.choice(n_items, n_cand, replace=False)
        slate = Slate(items, rng.lognormal(0, 1, n_cand), REASONS[rng.integers(0, len(REASONS), n_cand)],
                      np.where(rng.random(n_cand) < 0.3, rng.integers(0, n_items, n_cand), -1))  # fmt: skip
        n_seen = int(rng.integers(50, 300))
        seen = np.concatenate([rng.integers(0, n_items, n_seen), items[rng.random(n_cand) < 0.1]])
        user = UserContext(
            seen=seen,
            not_interested=rng.integers(0, n_items, 5),
            not_interested_creators=rng.integers(0, 5000, 2),
            age_bucket=None if rng.random() < 0.1 else AGES[rng.integers(0, len(AGES))],
            country=COUNTRIES[rng.integers(0, len(COUNTRIES))],
            cold=bool(rng.random() < 0.1),
        )
        shown = items[:k] if rng.random() < 0.25 else np.empty(0, np.int64)
        out.append((slate, user, PageRequest(k=k, shown=shown, now_ms=END)))
    return out


def time_calls(rr: ReRanker, reqs: list[Any], seed: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU seconds per call, and how many pages came out shorter than ``k``."""
    wall, cpu, short = [], [], 0
    for i, (slate, user, request) in enumerate(reqs):
        rng = np.random.default_rng([seed, i])
        w0, c0 = time.perf_counter(), time.process_time()
        page = rr.rerank(slate, user, request, rng)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        short += len(page) < request.k
    return wall, cpu, short


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--candidates", type=int, default=1000)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke-test size")
    args = p.parse_args()
    if args.quick:
        args.items, args.requests = 5000, 100
    rng = np.random.default_rng(args.seed)
    items = catalogue(args.items, rng)
    t0 = time.perf_counter()
    table = ItemPolicyTable.from_catalogue(items)
    build_s = time.perf_counter() - t0
    impressions = rng.integers(0, 2000, args.items).astype(float) * (rng.random(args.items) < 0.7)
    table = table.with_feedback(impressions, rng.binomial(impressions.astype(np.int64), 0.05))
    with_emb = table.with_embeddings(rng.standard_normal((args.items, args.dim)).astype(np.float32))
    reqs = requests(args.items, args.requests, args.candidates, args.k, rng)
    configs = {
        "default (MMR on categories)": (RerankConfig(), table),
        f"default + {args.dim}-d embeddings": (RerankConfig(), with_emb),
        "filters only": (RerankConfig(steps=("seen", "policy")), table),
        "default, MMR lambda=0": (RerankConfig(mmr_lambda=0.0), table),
    }
    rows = []
    with threadpool_limits(1):
        for name, (cfg, tbl) in configs.items():
            rr = ReRanker(cfg, tbl)
            time_calls(rr, reqs[: min(200, len(reqs))], args.seed)  # warm-up
            wall, cpu, short = time_calls(rr, reqs, args.seed)
            ms, cpu_ms = np.asarray(wall) * 1000, np.asarray(cpu) * 1000
            rows.append(
                {
                    "config": name,
                    "candidates": args.candidates,
                    "k": args.k,
                    "median_ms": round(float(np.median(ms)), 3),
                    "p99_ms": round(float(np.percentile(ms, 99)), 3),
                    "cpu_median_ms": round(float(np.median(cpu_ms)), 3),
                    "requests": len(ms),
                    "short_pages": short,
                }
            )
    print_table(rows)
    print(f"ItemPolicyTable.from_catalogue({args.items:,} items): {build_s:.2f}s")
    meta = machine_meta() | {"items": args.items, "table_build_s": round(build_s, 3), "seed": args.seed}
    print(f"wrote {write_results('rerank', rows, meta)}")


if __name__ == "__main__":
    main()
