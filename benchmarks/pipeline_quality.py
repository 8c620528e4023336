"""Pipeline quality: the full pipeline's NDCG@k beside every baseline in the same run (issue 5).

Run: ``python -m benchmarks.pipeline_quality [--dataset synthetic|movietweetings]
[--protocol strat|usertemporal ...] [--ratio R] [--seed S] [--k K] [--pipeline JSON] [--name N]``

One split per (dataset, protocol); ``pop``, ``itemknn``, ``ease``, ``als``, ``two_tower`` and ``pipeline`` are
fitted on its training part and scored on its test part by ``funnel.eval.runner.evaluate_models``
(the rows ``funnel evaluate --models …,pipeline`` prints). Every row also gets ``vs_best_%``:
its NDCG@k relative to the best baseline of the same run.

``synthetic`` (default: 3,000 users, 2,000 items, 200k events, seed 7; ratio 0.8) adds an
``oracle`` row: each test user's top k by the generator's true affinity at the end of the data
(``GroundTruth.top_k``), excluding their training items and items absent from the interactions
(no model can return those, and they hold no test event), scored by the same ``score_lists``; and
``pct_of_oracle`` (NDCG@k as % of the oracle's) for every row. ``movietweetings`` reads
``../shared/data/movietweetings-100k`` (``--data`` overrides) as ``funnel evaluate --format
movietweetings`` does; its default ratio is the CLI's for ``strat`` (0.75) and the README's for
``usertemporal`` (0.8). ``--pipeline '{"labels": {"label_fraction": 0.5}}'`` overrides
``RankingPipeline`` arguments (for experiments).

Results go to ``benchmarks/results/pipeline_quality_<dataset>_<protocol>.json`` (``--name``
replaces the ``pipeline_quality`` prefix).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks.common import machine_meta, print_table, write_results

REPO = Path(__file__).resolve().parents[1]
MOVIETWEETINGS = REPO.parent / "shared" / "data" / "movietweetings-100k"
BASELINES = ("pop", "itemknn", "ease", "als", "two_tower")
DEFAULT_RATIO = {("synthetic", "strat"): 0.8, ("synthetic", "usertemporal"): 0.8,
                 ("movietweetings", "strat"): 0.75, ("movietweetings", "usertemporal"): 0.8}  # fmt: skip


def load_movietweetings(folder: Path) -> dict[str, pa.Table]:
    """Interactions, items and users of a MovieTweetings folder, as ``funnel evaluate`` reads them."""
    from funnel.data.importers import import_dataset

    got: dict[str, list[pa.Table]] = {}
    import_dataset(folder, "movietweetings", sink=lambda kind, t: got.setdefault(kind, []).append(t),
                   progress=False)  # fmt: skip
    return {kind: pa.concat_tables(parts) for kind, parts in got.items()}


def oracle_scores(ds: Any, inter: Any, protocol: str, ratio: float, seed: int, k: int) -> dict[str, float]:
    """``score_lists`` of the ground-truth top ``k`` of the split's test users (see the docstring)."""
    from funnel.eval.runner import score_lists
    from funnel.eval.splits import make_split

    split = make_split(inter, protocol, ratio, seed)
    users = split.test_users
    user_row = {u: j for j, u in enumerate(ds.users.column("user_id").to_pylist())}
    truth_item_ids = ds.items.column("item_id").to_pylist()
    to_inter = inter.items.lookup(pa.array(truth_item_ids, pa.string())).astype(np.int64)  # -1: no events
    to_truth = np.full(inter.n_items, -1, dtype=np.int64)
    to_truth[to_inter[to_inter >= 0]] = np.flatnonzero(to_inter >= 0)
    absent = np.flatnonzero(to_inter < 0)
    rows = np.array([user_row[u] for u in inter.users.keys_of(users)], dtype=np.int64)
    history = split.train[users]
    exclude = [np.union1d(to_truth[history[r].indices], absent) for r in range(len(users))]
    best = ds.truth.top_k(rows, k, exclude=exclude)
    recs = np.where(best >= 0, to_inter[np.maximum(best, 0)], -1).astype(np.int32)
    return score_lists(recs, split, users, k)


def run(args: argparse.Namespace, protocol: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Evaluate every model (and the oracle on synthetic data) on one split; rows and a summary."""
    from funnel.core.interactions import Interactions
    from funnel.eval.runner import evaluate_models

    ratio = args.ratio if args.ratio is not None else DEFAULT_RATIO[(args.dataset, protocol)]
    ds = None
    if args.dataset == "synthetic":
        from funnel.data.synthetic import SyntheticConfig, generate

        cfg = SyntheticConfig(n_users=args.users, n_items=args.items, n_interactions=args.interactions,
                              seed=args.synthetic_seed)  # fmt: skip
        ds = generate(cfg)
        tables = {"interactions": ds.interactions, "items": ds.items, "users": ds.users}
    else:
        tables = load_movietweetings(Path(args.data or MOVIETWEETINGS))
    inter = Interactions.from_table(tables["interactions"])
    params = {"pipeline": json.loads(args.pipeline)} if args.pipeline else None
    report = evaluate_models(
        inter, protocol, args.k, [*BASELINES, "pipeline"], ratio=ratio, seed=args.seed, params=params,
        dataset=args.dataset, items_table=tables.get("items"), users_table=tables.get("users"),
    )  # fmt: skip
    results = {name: dict(res) for name, res in report.results.items()}
    if ds is not None:
        t = time.perf_counter()
        results["oracle"] = {**oracle_scores(ds, inter, protocol, ratio, args.seed, args.k),
                             "fit_seconds": time.perf_counter() - t}  # fmt: skip
    best = max(BASELINES, key=lambda m: results[m]["ndcg"])
    pipe, base = results["pipeline"]["ndcg"], results[best]["ndcg"]
    rows = []
    for name, res in results.items():
        row: dict[str, Any] = {"dataset": args.dataset, "protocol": protocol, "model": name}
        row.update({m: round(float(v), 4) for m, v in res.items()})
        row["vs_best_%"] = round(100.0 * (res["ndcg"] / base - 1.0), 2)
        if "oracle" in results:
            row["pct_of_oracle"] = round(100.0 * res["ndcg"] / results["oracle"]["ndcg"], 1)
        rows.append(row)
    summary = {
        "dataset": args.dataset, "protocol": protocol, "ratio": ratio, "seed": args.seed, "k": args.k,
        "n_users": report.n_users, "n_items": report.n_items, "pipeline": round(pipe, 4),
        "best_baseline": best, "best_baseline_ndcg": round(base, 4),
        "delta_%": round(100.0 * (pipe / base - 1.0), 2),
    }  # fmt: skip
    if "oracle" in results:
        summary["oracle"] = round(results["oracle"]["ndcg"], 4)
        summary["pipeline_pct_of_oracle"] = round(100.0 * pipe / results["oracle"]["ndcg"], 1)
    return rows, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("synthetic", "movietweetings"), default="synthetic")
    ap.add_argument("--protocol", nargs="+", choices=("strat", "usertemporal"), default=["strat"])
    ap.add_argument("--ratio", type=float, default=None, help="train fraction (default: per cell)")
    ap.add_argument("--seed", type=int, default=42, help="split seed")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--data", default=None, help="MovieTweetings folder")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--interactions", type=int, default=200_000)
    ap.add_argument("--synthetic-seed", type=int, default=7)
    ap.add_argument("--pipeline", default=None, help="JSON of RankingPipeline arguments (experiments)")
    ap.add_argument("--name", default="pipeline_quality", help="result file prefix")
    args = ap.parse_args()
    for protocol in args.protocol:
        t0 = time.perf_counter()
        rows, summary = run(args, protocol)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        print_table(rows)
        print(json.dumps(summary), flush=True)
        meta = {
            **machine_meta(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python -m benchmarks.pipeline_quality " + " ".join(sys.argv[1:]),
            "summary": summary,
            "pipeline_params": json.loads(args.pipeline) if args.pipeline else {},
        }
        print(f"wrote {write_results(f'{args.name}_{args.dataset}_{protocol}', rows, meta)}")


if __name__ == "__main__":
    main()
