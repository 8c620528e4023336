"""HTTP API under load on loopback: latency percentiles and throughput of ``GET /v1/recommendations``.

Run: ``python -m benchmarks.bench_api [--items 1000000 --users 100000 --interactions 2000000]
[--concurrency 1 8 32] [--seconds 20] [--modes embedded redis] [--client auto|wrk|httpx] [--quick]``

1. **Data.** A synthetic world (:mod:`funnel.data.synthetic`: ``--items`` items with titles and
   text, ``--users`` users, ``--interactions`` events) is imported into an engine and trained
   with ``Engine.train()`` (``model="auto"``: the baselines compared, the retrieval + ranking
   pipeline fitted; EASE is skipped above 20k items). The trained data directory is cached under
   ``benchmarks/.cache/`` (``FUNNEL_BENCH_CACHE``) keyed by the parameters, so reruns start at
   step 2 (``--rebuild`` forces a new one).
2. **Reference.** A child process serves ``Engine.recommend`` in process, one request at a time,
   over the same user mix: the latency without HTTP, and the retriever's candidate count per
   request (the merged list the ranker scores).
3. **Servers.** ``funnel serve`` as a subprocess on a free loopback port: ``embedded`` (one
   process, file event log, the retrain thread beside it) and ``redis`` (``--redis
   redis://127.0.0.1:6379/15 --prefix bench-<random> --workers 2``; its keys are deleted after).
   Warm-up: rounds of ``2 x workers + 2`` requests on fresh connections until every process
   (``x-funnel-worker``) answers within a second: each loads the model on its first request, and
   a level's keep-alive connections stay where they landed.
4. **Load.** A closed loop of ``c`` concurrent connections for ``--seconds`` per level: users
   drawn from known users (with history) and ``--cold-share`` unknown ones, ``limit=10``. The
   client (``--client``) is ``wrk`` when installed (:mod:`benchmarks.wrk_client`: a few µs of CPU
   per request), else async ``httpx`` clients (split over ``--client-procs`` processes; ~1.4 ms
   of CPU per request, taken from the 2 cores the server has). ``client_cpu`` is the client's
   CPU seconds per wall second (1.0 = a whole core), to tell when the client itself competes.

The target (issue 7): p99 <= 50 ms at concurrency 8 and >= 150 requests/s. Results:
``benchmarks/results/api.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine_meta, print_table, write_results
from benchmarks.wrk_client import drive_wrk, wrk_available

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("FUNNEL_BENCH_CACHE") or Path(__file__).resolve().parent / ".cache")
DATA_VERSION = 3
"""Bump when the cached data directory's recipe changes."""
TARGET_P99_MS, TARGET_RPS, TARGET_CONCURRENCY = 50.0, 150.0, 8
REDIS_URL = "redis://127.0.0.1:6379/15"
LIMIT = 10


# ---- 1. data ----------------------------------------------------------------------------------


def build(items: int, users: int, interactions: int, seed: int, rebuild: bool) -> tuple[Path, dict]:
    """The cached, trained data directory for these parameters (built when missing)."""
    folder = CACHE / f"api-v{DATA_VERSION}-i{items}-u{users}-n{interactions}-s{seed}"
    done = folder / "BUILT.json"
    if done.exists() and not rebuild:
        info = json.loads(done.read_text())
        print(f"cached data: {folder} (built in {info['build_s']}s)", flush=True)
        return folder, info
    from funnel.data.synthetic import SyntheticConfig, generate
    from funnel.engine import Engine

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    info: dict[str, Any] = {"items": items, "users": users, "interactions": interactions, "seed": seed}
    t0 = time.perf_counter()
    ds = generate(SyntheticConfig(n_users=users, n_items=items, n_interactions=interactions, seed=seed))
    info["generate_s"] = round(time.perf_counter() - t0, 1)
    print(f"generated {ds.interactions.num_rows:,} events in {info['generate_s']}s", flush=True)
    engine = Engine(folder / "data")
    t1 = time.perf_counter()
    engine.import_items(ds.items)
    engine.import_users(ds.users)
    engine.import_interactions(ds.interactions)
    info["import_s"] = round(time.perf_counter() - t1, 1)
    t2 = time.perf_counter()
    summary = engine.train()
    info["train_s"] = round(time.perf_counter() - t2, 1)
    engine.close()
    info.update(model=summary.model, n_items=summary.n_items, n_users=summary.n_users)
    info["n_interactions"] = summary.n_interactions
    ranking = summary.ranking
    info["ranking"] = {k: ranking.get(k) for k in ("heads", "skipped", "rows") if k in ranking}
    print(f"trained in {info['train_s']}s: baseline {summary.model}, ranking {info['ranking']}", flush=True)
    active = np.unique(ds.interactions.column("user_id").to_numpy(zero_copy_only=False))
    pick = np.random.default_rng(seed).choice(len(active), min(5000, len(active)), replace=False)
    (folder / "known_users.txt").write_text("\n".join(active[np.sort(pick)].tolist()) + "\n")
    info["build_s"] = round(time.perf_counter() - t0, 1)
    done.write_text(json.dumps(info, indent=2) + "\n")
    return folder, info


def user_mix(folder: Path, n: int, cold_share: float, seed: int) -> list[str]:
    """``n`` user ids: known users (with history) and ``cold_share`` never-seen ones, shuffled."""
    known = (folder / "known_users.txt").read_text().split()
    rng = np.random.default_rng(seed)
    cold = rng.random(n) < cold_share
    picks = rng.integers(0, len(known), n)
    return [f"bench-cold-{i}" if c else known[p] for i, (c, p) in enumerate(zip(cold, picks, strict=True))]


# ---- 2. in-process reference --------------------------------------------------------------------


def reference(folder: Path, users: list[str], seconds: float) -> dict[str, Any]:
    """Run in a child process: ``Engine.recommend`` latencies and candidate counts per request."""
    from funnel.api.server import limit_blas_threads
    from funnel.engine import Engine

    limit_blas_threads()  # as the servers do (FUNNEL_BLAS_THREADS)
    engine = Engine(folder / "data")
    t0 = time.perf_counter()
    pipeline = engine.pipeline()
    load_s = time.perf_counter() - t0
    ranking = pipeline.ranking
    counts: list[int] = []
    if ranking is not None:  # count the merged candidates the ranker scores
        retrieve = ranking.pipeline.retrieve

        def counted(query, trace=None):  # type: ignore[no-untyped-def]
            merged = retrieve(query, trace)
            counts.extend(len(m) for m in merged)
            return merged

        ranking.pipeline.retrieve = counted  # type: ignore[method-assign]
    for user in users[:20]:  # warm-up
        engine.recommend(user, k=LIMIT)
    counts.clear()
    walls, cpus, cold = [], [], []
    deadline = time.perf_counter() + seconds
    for user in users:
        if time.perf_counter() > deadline:
            break
        t, c = time.perf_counter(), time.process_time()
        engine.recommend(user, k=LIMIT)
        walls.append((time.perf_counter() - t) * 1e3)
        cpus.append((time.process_time() - c) * 1e3)
        cold.append(user.startswith("bench-cold-"))
    engine.close()
    return {"walls": walls, "cpus": cpus, "cold": cold, "counts": counts, "load_s": load_s}


def run_reference(folder: Path, users: list[str], seconds: float) -> dict[str, Any]:
    """:func:`reference` in a fresh process (the client process keeps a small heap)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(reference, (folder, users, seconds))


# ---- 3. servers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    folder: Path, mode: str, port: int, prefix: str, workers: int, sample: float
) -> subprocess.Popen:
    """``funnel serve`` in ``mode`` as a subprocess (its own process group)."""
    cmd = [sys.executable, "-m", "funnel", "serve", "--data-dir", str(folder / "data"), "--port", str(port),
           "--served-feature-sample", repr(sample)]  # fmt: skip
    if mode == "redis":
        cmd += ["--redis", REDIS_URL, "--prefix", prefix, "--workers", str(workers)]
    log = open(folder / f"serve-{mode}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn and its workers); SIGKILL after 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until ``/healthz`` answers 200 (or the server died / the timeout passed)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"funnel serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"funnel serve did not answer {base}/healthz in {timeout}s")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every live descendant (``/proc``).

    The server's CPU per request is what caps throughput on a loaded machine: at ``c`` ms of CPU
    per request, ``n`` cores serve at most ``1000 n / c`` requests a second whatever the latency.
    """
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, …
        children.setdefault(int(fields[1]), []).append(int(entry))
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        total += cpu.get(p, 0.0)
        stack += children.get(p, [])
    return total


def clean_redis(prefix: str) -> int:
    """Delete every key of ``prefix`` in the benchmark's Redis database; how many."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    return len(keys)


def redis_up() -> bool:
    """Whether the local Redis answers."""
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:
        return False


# ---- 4. load ------------------------------------------------------------------------------------


async def _load(base: str, users: list[str], concurrency: int, seconds: float, offset: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    lat: list[float] = []
    errors: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    state = {"next": offset}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def loop() -> None:
            while time.perf_counter() < deadline:
                user = users[state["next"] % len(users)]
                state["next"] += 1
                t = time.perf_counter()
                try:
                    r = await client.get("/v1/recommendations", params={"user_id": user, "limit": LIMIT})
                    body = r.json()
                except Exception as exc:  # a failed request is an error, not a crash
                    errors[type(exc).__name__] += 1
                    continue
                lat.append((time.perf_counter() - t) * 1e3)
                if r.status_code != 200:
                    errors[str(r.status_code)] += 1
                elif body.get("fallback"):
                    fallbacks[body["fallback"]] += 1

        c0 = time.process_time()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"lat": lat, "errors": dict(errors), "fallbacks": dict(fallbacks), "wall": wall,
            "cpu": time.process_time() - c0}  # fmt: skip


def _load_proc(args: tuple) -> dict:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_load(*args))


def drive(base: str, users: list[str], concurrency: int, seconds: float, procs: int) -> dict[str, Any]:
    """One load level: ``concurrency`` connections over ``procs`` client processes for ``seconds``."""
    procs = max(1, min(procs, concurrency))
    shares = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
    jobs = [(base, users, c, seconds, i * len(users) // procs) for i, c in enumerate(shares)]
    if procs == 1:
        parts = [_load_proc(jobs[0])]
    else:
        with mp.get_context("spawn").Pool(procs) as pool:
            parts = pool.map(_load_proc, jobs)
    lat = np.array([x for p in parts for x in p["lat"]])
    wall = max(p["wall"] for p in parts)
    errors: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    for p in parts:
        errors.update(p["errors"])
        fallbacks.update(p["fallbacks"])
    done = len(lat)
    ok = done - sum(v for k, v in errors.items() if k.isdigit())
    return {
        "requests": done,
        "errors": sum(errors.values()),
        "p50_ms": float(np.percentile(lat, 50)) if done else None,
        "p95_ms": float(np.percentile(lat, 95)) if done else None,
        "p99_ms": float(np.percentile(lat, 99)) if done else None,
        "rps": done / wall,
        "fallback_share": sum(fallbacks.values()) / max(1, ok),
        "client_cpu": sum(p["cpu"] for p in parts) / wall,
        "error_kinds": dict(errors),
        "fallback_kinds": dict(fallbacks),
    }


async def _warm_round(base: str, users: list[str], n: int) -> list[tuple[str, float]]:
    """``n`` concurrent requests on fresh connections: (answering process, seconds) of each 200."""
    import httpx

    async def one(user: str) -> tuple[str, float] | None:
        async with httpx.AsyncClient(base_url=base, timeout=120.0) as client:  # its own connection
            t = time.perf_counter()
            r = await client.get("/v1/recommendations", params={"user_id": user, "limit": LIMIT})
            ok = r.status_code == 200
            return (r.headers.get("x-funnel-worker", "?"), time.perf_counter() - t) if ok else None

    got = await asyncio.gather(*(one(users[i % len(users)]) for i in range(n)), return_exceptions=True)
    return [g for g in got if isinstance(g, tuple)]


def warm_up(base: str, users: list[str], workers: int, timeout: float = 900.0) -> float:
    """Rounds of ``2 x workers + 2`` requests on fresh connections until every process answers fast.

    Each process loads the model on its first request, and keep-alive connections stay with the
    process that accepted them: a level measured while one process still loads would queue its
    connections there for the whole level. Done when one round saw ``workers`` distinct processes
    (``x-funnel-worker``) all answer within a second. Returns the seconds it took.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        got = asyncio.run(_warm_round(base, users, 2 * workers + 2))
        fast = {pid for pid, s in got if s < 1.0}
        slow = {pid for pid, s in got if s >= 1.0}
        if len(fast) >= workers and not slow:
            return time.monotonic() - start
    raise SystemExit(f"warm-up did not settle in {timeout}s")


def bench_mode(mode: str, folder: Path, users: list[str], args) -> list[dict[str, Any]]:
    """Every concurrency level against one server mode."""
    port, prefix = free_port(), f"bench-{uuid.uuid4().hex[:8]}"
    base = f"http://127.0.0.1:{port}"
    proc = start_server(folder, mode, port, prefix, args.workers, args.served_feature_sample)
    rows = []
    try:
        wait_healthy(base, proc)
        warm = warm_up(base, users, args.workers if mode == "redis" else 1)
        print(f"{mode}: warm after {warm:.1f}s", flush=True)
        for c in args.concurrency:
            cpu0 = tree_cpu_seconds(proc.pid)
            if args.client == "wrk":
                got = drive_wrk(base, users, c, args.seconds, LIMIT)
            else:
                got = drive(base, users, c, args.seconds, args.client_procs)
            got["server_cpu_ms_per_request"] = (
                1e3 * (tree_cpu_seconds(proc.pid) - cpu0) / got["requests"] if got["requests"] else None
            )
            row = {"mode": mode if mode == "embedded" else f"redis ({args.workers} workers)"}
            row.update(concurrency=c, **got)
            row["target_met"] = (
                got["p99_ms"] is not None
                and got["p99_ms"] <= TARGET_P99_MS
                and got["rps"] >= TARGET_RPS
                and not got["errors"]
            ) if c == TARGET_CONCURRENCY else None  # fmt: skip
            rows.append(row)
            print(f"{mode} c={c}: p50 {got['p50_ms']:.1f} p99 {got['p99_ms']:.1f} ms, "
                  f"{got['rps']:.1f} req/s, server CPU {got['server_cpu_ms_per_request']:.1f} ms/request"
                  + (f", responses per process {got['by_worker']}" if "by_worker" in got else ""),
                  flush=True)  # fmt: skip
    finally:
        stop_server(proc)
        if mode == "redis":
            print(f"redis: deleted {clean_redis(prefix)} keys of {prefix}", flush=True)
    return rows


def main() -> None:
    """Build or reuse the data, run the reference and every mode; print the table, write ``api.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--interactions", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    ap.add_argument("--reference-seconds", type=float, default=20.0)
    ap.add_argument("--modes", nargs="+", default=["embedded", "redis"], choices=["embedded", "redis"])
    ap.add_argument("--workers", type=int, default=2, help="uvicorn processes in redis mode")
    ap.add_argument(
        "--client",
        choices=["auto", "wrk", "httpx"],
        default="auto",
        help="load client: wrk (a C client, when installed) or httpx; auto: wrk if on PATH",
    )
    ap.add_argument("--client-procs", type=int, default=1, help="httpx client processes")
    ap.add_argument("--cold-share", type=float, default=0.2)
    ap.add_argument("--served-feature-sample", type=float, default=0.01, help="funnel serve's (its default)")
    ap.add_argument("--rebuild", action="store_true", help="ignore the cached data directory")
    ap.add_argument("--quick", action="store_true", help="smoke-test size (numbers not reported)")
    args = ap.parse_args()
    if args.client == "auto":
        args.client = "wrk" if wrk_available() else "httpx"
    elif args.client == "wrk" and not wrk_available():
        raise SystemExit("--client wrk: no wrk on PATH (Debian: apt-get install wrk)")
    if args.quick:
        args.items, args.users, args.interactions = 3_000, 600, 30_000
        args.concurrency, args.seconds, args.reference_seconds = [1, 4], 1.5, 1.0
    meta = machine_meta()
    folder, info = build(args.items, args.users, args.interactions, args.seed, args.rebuild)
    meta["data"] = info
    users = user_mix(folder, 20_000, args.cold_share, args.seed)
    ref = run_reference(folder, users, args.reference_seconds)
    walls = np.asarray(ref["walls"])
    counts = np.asarray(ref["counts"])
    cold = np.asarray(ref["cold"], bool)
    rows: list[dict[str, Any]] = [
        {
            "mode": "in-process Engine.recommend",
            "concurrency": 1,
            "requests": len(walls),
            "errors": 0,
            "p50_ms": float(np.percentile(walls, 50)),
            "p95_ms": float(np.percentile(walls, 95)),
            "p99_ms": float(np.percentile(walls, 99)),
            "rps": len(walls) / (walls.sum() / 1e3),
            "cpu_median_ms": statistics.median(ref["cpus"]),
        }
    ]
    meta["reference"] = {
        "load_s": round(ref["load_s"], 1),
        "p50_ms_known": float(np.median(walls[~cold])) if (~cold).any() else None,
        "p50_ms_cold": float(np.median(walls[cold])) if cold.any() else None,
    }
    if len(counts) == len(cold):
        meta["candidates"] = {
            group: {"median": int(np.median(c)), "min": int(c.min()), "max": int(c.max())}
            for group, c in (("known", counts[~cold]), ("cold", counts[cold]))
            if len(c)
        }
    print(f"reference: p50 {rows[0]['p50_ms']:.1f} ms; candidates {meta.get('candidates')}", flush=True)
    for mode in args.modes:
        if mode == "redis" and not redis_up():
            print(f"redis: skipped, no server at {REDIS_URL}", flush=True)
            meta["redis"] = "skipped: no server"
            continue
        rows += bench_mode(mode, folder, users, args)
    meta.update(
        users_mix={"cold_share": args.cold_share, "limit": LIMIT},
        served_feature_sample=args.served_feature_sample,
        seconds_per_level=args.seconds,
        loop="closed",
        client="wrk, 1 thread" if args.client == "wrk" else "httpx.AsyncClient on uvloop",
        client_procs=1 if args.client == "wrk" else args.client_procs,
        target={"p99_ms": TARGET_P99_MS, "rps": TARGET_RPS, "concurrency": TARGET_CONCURRENCY},
        load_average_after=machine_meta()["load_average"],
    )
    shown = [{k: v for k, v in r.items() if not k.endswith("_kinds")} for r in rows]
    print_table(shown)
    print(f"results: {write_results('api', rows, meta)}")


if __name__ == "__main__":
    main()
