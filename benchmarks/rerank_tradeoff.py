"""The MMR λ trade-off table on synthetic data (see :mod:`funnel.rerank.tradeoff`).

Run: ``python -m benchmarks.rerank_tradeoff [--users 6000 --items 3000 --interactions 300000]
[--seeds 3] [--quick]``. Prints NDCG@10, intra-list diversity, category entropy and coverage for
λ in {0, 0.2, 0.5, 0.8} plus 0.05, 0.1, 0.15 and 0.3 (means over ``--seeds`` synthetic worlds),
the default λ they support (the largest losing at most 2 % NDCG@10), and writes
``benchmarks/results/rerank_tradeoff.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import machine_meta, print_table, write_results
from funnel.data.synthetic import SyntheticConfig
from funnel.rerank.tradeoff import LAMBDAS, mmr_tradeoff, pick_lambda

GRID = tuple(sorted({*LAMBDAS, 0.05, 0.1, 0.15, 0.3}))
"""The issue's λ values plus finer steps where the 2 % bound is crossed."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=6000)
    p.add_argument("--items", type=int, default=3000)
    p.add_argument("--interactions", type=int, default=300_000)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--model", default="ease")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke-test size")
    args = p.parse_args()
    if args.quick:
        args.users, args.items, args.interactions, args.seeds = 300, 200, 10_000, 1
    t0 = time.perf_counter()
    per_seed = []
    for seed in range(args.seeds):
        cfg = SyntheticConfig(
            n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=seed
        )
        per_seed.append(mmr_tradeoff(cfg, GRID, k=10, candidates=args.candidates, model=args.model))
    keys = ("ndcg", "ndcg_change", "diversity", "category_entropy", "coverage")
    rows = [
        {"lambda": lam, **{key: round(float(np.mean([s[i][key] for s in per_seed])), 4) for key in keys}}
        for i, lam in enumerate(GRID)
    ]
    for row, i in zip(rows, range(len(GRID)), strict=True):
        row["ndcg_change_min_max"] = [round(min(s[i]["ndcg_change"] for s in per_seed), 4),
                                      round(max(s[i]["ndcg_change"] for s in per_seed), 4)]  # fmt: skip
    print_table(rows)
    chosen = pick_lambda(rows)
    worst = [pick_lambda(s) for s in per_seed]
    print(f"default lambda (largest with <= 2% mean NDCG@10 loss): {chosen}; per seed: {worst}")
    meta = machine_meta() | {
        "users": args.users, "items": args.items, "interactions": args.interactions, "seeds": args.seeds,
        "candidates": args.candidates, "model": args.model, "k": 10, "chosen_lambda": chosen,
        "chosen_per_seed": worst, "test_users": per_seed[0][0]["users"],
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    print(f"wrote {write_results('rerank_tradeoff', rows, meta)}")


if __name__ == "__main__":
    main()
