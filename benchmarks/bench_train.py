"""Full training (``Engine.train``) on 1M synthetic interactions, step by step, and batch precompute.

Run: ``python -m benchmarks.bench_train [--users 100000 --items 5000 --interactions 1000000]
[--logged 0.05] [--workers 2] [--batch-users N] [--retrain] [--keep DIR] [--quick]``

A seeded synthetic world (``funnel.data.synthetic``) goes into a fresh data directory: the
catalogue, the users and the first ``1 - logged`` of the interactions by time through
``Engine.import_*`` (the lake), the last ``logged`` share through ``Engine.log_interactions``
(the event log, as the API would have written them). Then ``Engine.train()`` with its defaults
(model selection, retrieval sources, ranker, gate, bundle) runs under
:func:`funnel.core.steps.recording`, which gives the breakdown: ``compaction`` (the event log
read into a table beside the lake's), ``candidate`` (``datasets``, ``baseline selection``,
``baseline fit``, ``ranking``: its ``training rows`` with the sources fitted on the history, the
candidates and the point-in-time features, ``ranker fit``, ``serving sources`` refitted on
everything, ``bundle write``) and ``gate`` (the rest of ``Engine.train``: the gate's evaluation,
its ``scratch fit`` when a live version exists, and the promotion). ``--retrain`` logs as many
events again and trains a second version, whose gate refits the candidate's recipe on the events
before its window and compares it with the live one.

Batch precompute: ``funnel.batch.run_batch`` (what ``funnel recommend --all-users`` runs) for
the first ``--batch-users`` users (default: all) with ``--workers`` processes, top 10;
throughput in users/s including the workers' pipeline loads. Results: ``benchmarks/results/train.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.common import machine_meta, print_table, write_results
from funnel.batch import run_job
from funnel.batch_job import BatchJob, open_job, reader
from funnel.core.steps import StepTimes, recording
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.engine import Engine

TARGET_S = 300.0
QUICK_RANKING = {"ranker": {"n_estimators": 10}, "max_label_users": 200, "negatives": 20}
"""``--quick``: a small ranker, so that the smoke run stays short (its numbers are not reported)."""


def load_world(engine: Engine, world: Any, logged: float) -> dict[str, float]:
    """Import catalogue, users and the older interactions; log the newest ``logged`` share; seconds."""
    inter = world.interactions.sort_by("timestamp")
    cut = int(inter.num_rows * (1 - logged))
    started = time.perf_counter()
    engine.import_items(world.items)
    engine.import_users(world.users)
    engine.import_interactions(inter.slice(0, cut))
    imported = time.perf_counter() - started
    started = time.perf_counter()
    log_events(engine, inter.slice(cut))
    return {"import": imported, "event log append": time.perf_counter() - started}


def log_events(engine: Engine, table: pa.Table, batch: int = 10_000) -> None:
    """Append ``table``'s interactions to the engine's event log (as the API writes them)."""
    ms = pc.cast(table.column("timestamp"), pa.int64()).to_pylist()
    rows = table.drop(["timestamp"]).to_pylist()
    for start in range(0, len(rows), batch):
        chunk = zip(rows[start : start + batch], ms[start : start + batch], strict=True)
        engine.log_interactions([{**r, "timestamp": t} for r, t in chunk])


def train_rows(label: str, steps: StepTimes, total: float, extra: dict[str, float]) -> list[dict[str, Any]]:
    """The breakdown of one training: recorded steps, the gate by difference, shares of ``total``."""
    rows = [{"run": label, "step": k, "seconds": v, "share": None} for k, v in extra.items()]
    for row in steps.rows():
        if not str(row["path"]).startswith("scratch fit"):  # inside the gate: one line below
            rows.append({"run": label, "step": row["step"], "seconds": row["seconds"]})
    gate = total - steps.seconds.get("compaction", 0.0) - steps.seconds.get("candidate", 0.0)
    rows.append({"run": label, "step": "gate (evaluation, scratch fit, promotion)", "seconds": gate})
    if "scratch fit" in steps.seconds:
        rows.append(
            {"run": label, "step": "  scratch fit (in the gate)", "seconds": steps.seconds["scratch fit"]}
        )
    rows.append({"run": label, "step": "Engine.train total", "seconds": total})
    for row in rows:
        row["seconds"] = round(float(row["seconds"]), 2)
        if "share" not in row:
            row["share"] = round(row["seconds"] / total, 3)
    return rows


def later_events(world: Any, cfg: SyntheticConfig, n: int) -> pa.Table:
    """``n`` interactions of another seed's world, moved to start where ``world``'s end (new events)."""
    newer = generate(cfg).interactions.sort_by("timestamp").slice(0, n)
    ts = pc.cast(newer.column("timestamp"), pa.int64())
    end = pc.max(pc.cast(world.interactions.column("timestamp"), pa.int64())).as_py()
    moved = pc.add(pc.subtract(ts, pc.min(ts)), pa.scalar(end + 1, pa.int64()))
    at = newer.schema.get_field_index("timestamp")
    return newer.set_column(at, "timestamp", moved.cast(newer.schema.field(at).type))


def train_once(engine: Engine, label: str, ranking: dict[str, Any] | None, extra: dict[str, float]):
    """``Engine.train`` under a step recording; its table rows and summary."""
    started = time.perf_counter()
    with recording() as steps:
        summary = engine.train(ranking=ranking) if ranking is not None else engine.train()
    total = time.perf_counter() - started
    print(f"{label}: {summary.version} {summary.status} in {total:.1f}s", flush=True)
    return train_rows(label, steps, total, extra), summary, total


def batch(data_dir: Path, users: int | None, workers: int) -> dict[str, Any]:
    """Batch precompute of the first ``users`` users (all: ``None``) with ``workers`` processes."""
    out = data_dir.parent / "top10.parquet"
    engine = reader(data_dir)
    job = open_job(engine, out, 10, 2000)
    engine.close()
    if users is not None and users < job.n_users:  # a prefix of the pinned user list
        job = BatchJob(**{**job.__dict__, "n_users": users})
    started = time.perf_counter()
    result = run_job(job, workers)
    seconds = time.perf_counter() - started
    return {"run": "batch precompute", "users": result.users, "workers": workers, "rows": result.rows,
            "seconds": round(seconds, 1), "users_per_s": round(result.users / seconds, 1)}  # fmt: skip


def main() -> None:
    """Run the benchmark; print the tables and write ``train.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--logged", type=float, default=0.05, help="share of the interactions in the event log")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-users", type=int, default=None, help="batch precompute: first N users")
    ap.add_argument("--retrain", action="store_true", help="also time a retrain gated against v1")
    ap.add_argument("--keep", type=Path, default=None, help="keep the trained data directory here")
    ap.add_argument("--quick", action="store_true", help="smoke-test size (numbers not reported)")
    args = ap.parse_args()
    ranking = None
    if args.quick:
        args.users, args.items, args.interactions, ranking = 300, 120, 8_000, QUICK_RANKING
    meta = machine_meta()
    tmp = Path(tempfile.mkdtemp(prefix="funnel-bench-train-"))
    data_dir = args.keep or tmp / "data"
    try:
        started = time.perf_counter()
        cfg = SyntheticConfig(
            n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=0
        )
        world = generate(cfg)
        meta["generate_s"] = round(time.perf_counter() - started, 1)
        engine = Engine(data_dir)
        loaded = load_world(engine, world, args.logged)
        rows, summary, total = train_once(engine, "v1 (first version)", ranking, loaded)
        meta["v1"] = {"status": summary.status, "model": summary.model, "ranking": summary.ranking}
        if args.retrain:
            newer = later_events(
                world, dataclasses.replace(cfg, seed=1), int(args.interactions * args.logged)
            )
            t = time.perf_counter()
            log_events(engine, newer)
            more_rows, summary2, _ = train_once(engine, "v2 (retrain, gated)", ranking, {
                "event log append": time.perf_counter() - t})  # fmt: skip
            rows += more_rows
            meta["v2"] = {"status": summary2.status, "gate": summary2.gate.get("reason")}
        engine.close()
        meta["load_average_after_train"] = machine_meta()["load_average"]
        batch_row = batch(data_dir, args.batch_users, args.workers)
        meta.update(
            users=args.users, items=args.items, interactions=args.interactions, logged=args.logged,
            target_s=TARGET_S, within_target=total <= TARGET_S, quick=args.quick,
            load_average_after=machine_meta()["load_average"],
        )  # fmt: skip
        print_table(rows)
        print()
        print_table([batch_row])
        print(f"results: {write_results('train', [*rows, batch_row], meta)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
