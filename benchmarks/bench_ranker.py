"""Ranker scoring latency: 1000 candidates x all features through every head, single-threaded.

Run: ``python -m benchmarks.bench_ranker [--users 3000 --interactions 150000 --reps 200] [--quick]``

Real training rows: a synthetic dataset goes through ``RankingPipeline.training_rows`` (the default
retrieval sources, leak-free labels, point-in-time features: ~70 columns, many NaN), and
``MultiObjectiveRanker`` is trained twice at its default sizes (at most 300 trees of 7 leaves):
early-stopped on held-out users, as the pipeline trains it, and with all 300 trees per head (the
worst case of the defaults). Slates are 1000-row slices of the held-out rows. Methods, each timed
per call (wall and process CPU) after a warm-up, round-robin so that load drifts hit them alike:

* LightGBM's ``predict`` per head, and ``score`` over all heads (``compiled=False``);
* ``score`` through lleaves-compiled heads (the default); its compile time is measured uncached;
* tl2cgen (treelite -> C -> gcc -O3) heads, when ``tl2cgen`` is installed;
* a pre-ranker: the engage head's first ``--pre-trees`` trees narrow 1000 -> ``--keep`` rows, then
  all heads score those (with LightGBM, and compiled); ``top20_recall`` is the share of the full
  score's top 20 that survive the cut.

``ratio`` is LightGBM ``score``'s median over the method's (same run). ``max_abs_diff`` compares
the method's full scores with LightGBM's. Results: ``benchmarks/results/ranker.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np

from benchmarks.common import machine_meta, print_table, write_results
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.ranking.compiled import compile_heads
from funnel.ranking.model import RankingPipeline
from funnel.ranking.ranker import MultiObjectiveRanker
from funnel.retrieval.sources.common import retrieval_data

TARGET_MS = 5.0


def training_rows(users: int, items: int, interactions: int):
    """Training rows of a synthetic dataset, split into train / held-out users (every fifth)."""
    ds = generate(SyntheticConfig(n_users=users, n_items=items, n_interactions=interactions, seed=0))
    data = retrieval_data(ds.interactions, ds.items, ds.users)
    with tempfile.TemporaryDirectory() as tmp:
        rows, _ = RankingPipeline(None, total=200, negatives=100, max_label_users=users).training_rows(
            data, tmp
        )
    held = np.arange(len(rows.group_sizes)) % 5 == 0
    return rows.take_groups(~held), rows.take_groups(held), rows.names


def slates(X: np.ndarray, n: int, count: int = 8) -> list[np.ndarray]:
    """Up to ``count`` distinct ``n``-row slices of ``X`` (tiled when ``X`` is shorter)."""
    if len(X) < n:
        X = np.tile(X, (n // max(1, len(X)) + 1, 1))
    starts = np.linspace(0, len(X) - n, num=count).astype(int)
    return [np.ascontiguousarray(X[s : s + n]) for s in dict.fromkeys(starts.tolist())]


def tl2cgen_score(
    ranker: MultiObjectiveRanker, folder: str
) -> tuple[Callable[[np.ndarray], Any] | None, str]:
    """A scoring function over tl2cgen-compiled heads and its compile seconds (or None, why)."""
    try:
        import tl2cgen
        import treelite
    except ImportError as exc:
        return None, f"tl2cgen not installed ({exc})"
    start = time.perf_counter()
    predictors = {}
    for head, booster in ranker.boosters_.items():
        lib = f"{folder}/{head}.so"
        model = treelite.frontend.from_lightgbm(booster)
        tl2cgen.export_lib(model, toolchain="gcc", libpath=lib, params={"parallel_comp": 4}, nthread=1)
        predictors[head] = tl2cgen.Predictor(lib, nthread=1)
    seconds = time.perf_counter() - start

    def score(X: np.ndarray) -> np.ndarray:
        dm, total = tl2cgen.DMatrix(X, dtype="float32"), np.zeros(len(X))
        for head, pred in predictors.items():
            z = pred.predict(dm, pred_margin=True).reshape(-1)
            z = ranker.platt_[0] * z + ranker.platt_[1] if head == "engage" else z
            total += ranker.weights.get(head, 0.0) / (1.0 + np.exp(-z))
        return total

    return score, f"{seconds:.1f}"


def pre_ranked(pre: Callable[[np.ndarray], np.ndarray], full: MultiObjectiveRanker, keep: int):
    """Score with ``pre``, keep the best ``keep`` rows, score those with every head of ``full``."""

    def score(X: np.ndarray) -> np.ndarray:
        top = np.argpartition(-pre(X), keep - 1)[:keep] if len(X) > keep else np.arange(len(X))
        out = np.full(len(X), -np.inf)
        out[top] = full.score(X[top])
        return out

    return score


def time_methods(methods: dict[str, Callable[[np.ndarray], Any]], data: list[np.ndarray], reps: int) -> dict:
    """Per method: wall ms of every call and CPU ms, round-robin over methods, after a warm-up."""
    walls: dict[str, list[float]] = {m: [] for m in methods}
    cpus: dict[str, list[float]] = {m: [] for m in methods}
    for f in methods.values():
        f(data[0])
    for r in range(reps):
        X = data[r % len(data)]
        for name, f in methods.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f(X)
            walls[name].append((time.perf_counter() - t0) * 1e3)
            cpus[name].append((time.process_time() - c0) * 1e3)
    return {m: (walls[m], cpus[m]) for m in methods}


def bench_model(label: str, ranker: MultiObjectiveRanker, data: list[np.ndarray], args) -> list[dict]:
    """The table rows of one trained ranker."""
    slow = MultiObjectiveRanker(**{**ranker.get_params(), "compiled": False})
    slow.boosters_, slow.platt_, slow.feature_names_ = ranker.boosters_, ranker.platt_, ranker.feature_names_
    slow.skipped_, slow.n_items_ = ranker.skipped_, 0
    start = time.perf_counter()
    fast_heads, why = compile_heads(ranker.boosters_, cache=False)  # the uncached compile time
    compile_s = time.perf_counter() - start
    if fast_heads is None:
        raise SystemExit(f"lleaves unavailable: {why}")
    ranker.compile()
    assert ranker.scoring_ == "compiled (lleaves)", ranker.scoring_
    methods: dict[str, Callable[[np.ndarray], Any]] = {}
    for head, b in ranker.boosters_.items():
        methods[f"lightgbm predict {head} ({b.num_trees()} trees)"] = lambda X, b=b: b.predict(
            X, num_threads=1, raw_score=True
        )
    methods["lightgbm score (all heads)"] = lambda X: slow.score(X, threads=1)
    methods["lleaves score (all heads, default)"] = lambda X: ranker.score(X, threads=1)
    compile_time = {"lleaves score (all heads, default)": f"{compile_s:.1f}"}
    engage = ranker.boosters_.get("engage")
    if engage is not None:
        text = engage.model_to_string(num_iteration=min(args.pre_trees, engage.num_trees()))
        pre_lgb = lgb.Booster(model_str=text)
        start = time.perf_counter()
        pre_fast, _ = compile_heads({"engage": pre_lgb}, cache=False)
        pre_s = time.perf_counter() - start
        k = args.keep
        methods[f"pre-ranker -> {k} + lightgbm heads"] = pre_ranked(
            lambda X: pre_lgb.predict(X, num_threads=1, raw_score=True), slow, k
        )
        name = f"pre-ranker -> {k} + lleaves heads"
        methods[name] = pre_ranked(lambda X: pre_fast.raw(X)["engage"], ranker, k)
        compile_time[name] = f"{compile_s + pre_s:.1f}"
    with tempfile.TemporaryDirectory() as tmp:
        tl_score, note = (None, "skipped at --quick size") if args.quick else tl2cgen_score(ranker, tmp)
        if tl_score is None:
            print(f"tl2cgen: {note}")
        else:
            methods["tl2cgen score (all heads)"] = tl_score
            compile_time["tl2cgen score (all heads)"] = note
        timed = time_methods(methods, data, args.reps)
        base = statistics.median(timed["lightgbm score (all heads)"][0])
        reference = [slow.score(X) for X in data]
        rows = []
        for name, (walls, cpus) in timed.items():
            med = statistics.median(walls)
            row: dict[str, Any] = {"model": label, "method": name, "median_ms": med}
            row.update(p99_ms=float(np.percentile(walls, 99)), cpu_median_ms=statistics.median(cpus))
            row["ratio"] = None if "predict" in name else base / med
            row["compile_s"] = compile_time.get(name, "")
            got = [methods[name](X) for X in data]
            if "pre-ranker" in name:
                kept = [set(np.flatnonzero(np.isfinite(g)).tolist()) for g in got]
                hits = [
                    len(set(np.argsort(-ref)[:20].tolist()) & k)
                    for ref, k in zip(reference, kept, strict=True)
                ]
                row["top20_recall"] = float(np.mean(hits)) / 20
            elif "score" in name:
                diffs = [float(np.abs(g - ref).max()) for g, ref in zip(got, reference, strict=True)]
                row["max_abs_diff"] = max(diffs)
            rows.append(row)
    return rows


def train(train_rows, held, names, early_stopping: bool, n_estimators: int) -> MultiObjectiveRanker:
    """A ranker at the default sizes, early-stopped on ``held`` or with all its trees."""
    valid = (held.X, held.group_sizes, held.labels) if early_stopping else None
    ranker = MultiObjectiveRanker(n_estimators=n_estimators)
    return ranker.fit(train_rows.X, train_rows.group_sizes, train_rows.labels, names, valid=valid)


def main() -> None:
    """Run the benchmark; print the table and write ``ranker.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--interactions", type=int, default=150_000)
    ap.add_argument("--candidates", type=int, default=1_000)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--pre-trees", type=int, default=15)
    ap.add_argument("--keep", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="smoke-test size (numbers not reported)")
    args = ap.parse_args()
    if args.quick:
        args.users, args.items, args.interactions, args.reps = 200, 200, 8_000, 5
    meta = machine_meta()
    start = time.perf_counter()
    train_rows, held, names = training_rows(args.users, args.items, args.interactions)
    meta["rows_s"] = round(time.perf_counter() - start, 1)
    data = slates(held.X, args.candidates)
    n_estimators = 10 if args.quick else MultiObjectiveRanker().n_estimators  # the default cap
    rows = []
    for label, early in (("early-stopped", True), (f"{n_estimators} trees/head", False)):
        start = time.perf_counter()
        ranker = train(train_rows, held, names, early, n_estimators)
        trees = {h: b.num_trees() for h, b in ranker.boosters_.items()}
        print(f"{label}: trained in {time.perf_counter() - start:.1f}s, trees {trees}", flush=True)
        meta[label] = {"trees": trees, "skipped": ranker.skipped_}
        rows += bench_model(label, ranker, data, args)
    meta.update(
        features=len(names),
        nan_share=round(float(np.isnan(held.X).mean()), 3),
        train_rows=len(train_rows.X),
        slates=len(data),
        candidates=args.candidates,
        target_ms=TARGET_MS,
        load_average_after=machine_meta()["load_average"],
    )
    print_table(rows)
    print(f"results: {write_results('ranker', rows, meta)}")


if __name__ == "__main__":
    main()
