"""Batch precompute (the "weekly playlist"): top-N for every user into one Parquet file.

``funnel recommend --all-users --out FILE.parquet [--k N] [--workers W]`` runs :func:`run_batch`:

* **Pinned.** The first run fixes the job in ``FILE.parquet.parts/job.json``: the live version,
  the event-log end, ``k``, the part size; the user list goes to ``users.arrow`` (the version's
  users, then those first seen in the log up to that end). Every part is computed from that
  version caught up to exactly that offset, so the output does not depend on what happens to
  the registry or the log meanwhile, nor on how often the job was interrupted.
* **Resumable.** Users are cut into parts of ``part_size``; each finished part is written as
  ``part-NNNNN.parquet`` (temp file, ``os.replace``). A rerun of the same command skips the
  finished parts; a rerun with another ``k`` or part size is refused (exit 2) until the folder is
  deleted. When every part is there they are concatenated into ``FILE.parquet`` (atomically)
  and the folder is removed.
* **Parallel.** ``workers`` > 1 spawns that many processes, each loading the pipeline once and
  computing whole parts with one BLAS / torch / OpenMP thread; the parts do not depend on
  ``workers``, so neither does the output.

Rows (:data:`SCHEMA`): ``user_id, rank`` (1-based), ``item_id, score`` (null for a padding item
without a score), ``reason_code``. Items unlisted in the lake since the version was trained are
left out, like seen items.

Example:
    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> from pathlib import Path
    >>> from funnel.engine import Engine
    >>> d = Path(tempfile.mkdtemp())
    >>> eng = Engine(d)
    >>> _ = eng.import_interactions(pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
    ...                                      "timestamp": [1_700_000_000, 1_700_000_001, 1_700_000_002]}))
    >>> _ = eng.train(model="pop")
    >>> run_batch(d, d / "top.parquet", k=2).users
    2
    >>> pq.read_table(d / "top.parquet").to_pylist()[0]
    {'user_id': 'u2', 'rank': 1, 'item_id': 'b', 'score': 1.0, 'reason_code': 'because_you_watched'}
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from funnel.batch_job import BatchJob, open_job, part_path, reader
from funnel.core.errors import ValidationError
from funnel.pipeline import Pipeline

SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float32()),
        ("reason_code", pa.string()),
    ]
)
BATCH = 256
"""Users per ``Pipeline.recommend`` call inside a part."""
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BatchResult:
    """What a run did: the output file, its version, users and rows, parts done now / before, time."""

    out: Path
    version: str
    users: int
    rows: int
    parts_run: int
    parts_skipped: int
    seconds: float


def run_batch(
    data_dir: str | Path,
    out: str | Path,
    k: int = 10,
    workers: int = 1,
    part_size: int = 2000,
    progress: Progress | None = None,
) -> BatchResult:
    """Top-``k`` for every user into ``out`` (Parquet); resumable and parallel, see the module docstring.

    ``progress(users_done, users_total)`` is called as parts finish (skipped ones first).
    """
    return run_job(plan_batch(data_dir, out, k, workers, part_size), workers, progress)


def plan_batch(data_dir: str | Path, out: str | Path, k: int, workers: int, part_size: int) -> BatchJob:
    """Check the arguments and pin the job (or read back the one started before); nothing ranked yet."""
    out = Path(out)
    if out.suffix != ".parquet":
        raise ValidationError(f"must name a .parquet file, got {str(out)!r}", field="--out")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise ValidationError(f"must be an integer from 1 to 64, got {workers!r}", field="--workers")
    engine = reader(data_dir)
    try:
        return open_job(engine, out, k, part_size)
    finally:
        engine.close()


def run_job(job: BatchJob, workers: int = 1, progress: Progress | None = None) -> BatchResult:
    """Compute the parts of ``job`` not written yet, then concatenate them into its output."""
    started = time.perf_counter()
    todo = [p for p in range(job.n_parts) if not part_path(job.folder, p).exists()]
    done_users = job.n_users - sum(len(job.part_users(p)) for p in todo)
    if progress is not None:
        progress(done_users, job.n_users)
    for n in _run_parts(job, todo, workers):
        done_users += n
        if progress is not None:
            progress(done_users, job.n_users)
    rows = _concat(job, job.out)
    seconds = time.perf_counter() - started
    return BatchResult(job.out, job.version, job.n_users, rows, len(todo), job.n_parts - len(todo), seconds)


def _run_parts(job: BatchJob, parts: list[int], workers: int):  # type: ignore[no-untyped-def]
    """Compute ``parts``; yields each finished part's user count (in completion order)."""
    if not parts:
        return
    if workers == 1 or len(parts) == 1:
        pipeline = _load(job)
        for p in parts:
            yield _write_part(job, pipeline, p)
        return
    ctx = get_context("spawn")  # no fork of a process that may hold torch / OpenMP threads
    with ProcessPoolExecutor(min(workers, len(parts)), ctx, _init_worker, (job,)) as pool:
        futures = [pool.submit(_worker_part, p) for p in parts]
        for future in as_completed(futures):
            yield future.result()


def _load(job: BatchJob) -> Pipeline:
    """The job's version caught up to its log end, with the items unlisted in the lake since left out."""
    engine = reader(job.data_dir)
    try:
        pipeline = engine.load_pipeline(job.version, until=job.log_end)
        items = engine.lake.read("items", columns=["item_id", "status"])
    finally:
        engine.close()
    if items.num_rows:  # the lake's last row of an item is its state (an unlisting is appended)
        ids, statuses = items.column("item_id").to_pylist(), items.column("status").to_pylist()
        last = dict(zip(ids, statuses, strict=True))
        pipeline.set_listed([key for key, status in last.items() if status == "unlisted"], False)
    return pipeline


_WORKER: dict[str, Any] = {}


def _init_worker(job: BatchJob) -> None:
    """Process initialiser: one thread per process, the pipeline loaded once."""
    from threadpoolctl import threadpool_limits

    _WORKER["limits"] = threadpool_limits(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    _WORKER["job"], _WORKER["pipeline"] = job, _load(job)


def _worker_part(part: int) -> int:
    return _write_part(_WORKER["job"], _WORKER["pipeline"], part)


def _write_part(job: BatchJob, pipeline: Pipeline, part: int) -> int:
    """Rank part ``part``'s users and write its file atomically; returns its user count."""
    users = job.part_users(part)
    tables = [recommend_table(pipeline, users[s : s + BATCH], job.k) for s in range(0, len(users), BATCH)]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    path = part_path(job.folder, part)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return len(users)


def recommend_table(pipeline: Pipeline, users: list[str], k: int) -> pa.Table:
    """Top-``k`` rows (:data:`SCHEMA`) of ``users``; items no longer listed left out."""
    unlisted = int((~pipeline.bundle.listed[: pipeline.n_items]).sum())
    ranked = pipeline.recommend(users, k + min(unlisted, 1000))  # room for the ones left out below
    cols: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    for user, page in zip(users, ranked, strict=True):
        keep = np.flatnonzero(pipeline.bundle.listed[page.items])[:k]
        items = page.items[keep]
        scores = page.scores[keep].tolist()
        cols["user_id"] += [user] * len(items)
        cols["rank"] += list(range(1, len(items) + 1))
        cols["item_id"] += pipeline.bundle.items.keys_of(items)
        cols["score"] += [s if math.isfinite(s) else None for s in scores]
        cols["reason_code"] += [page.reasons[i].code for i in keep.tolist()]
    return pa.table(cols, schema=SCHEMA)


def _concat(job: BatchJob, out: Path) -> int:
    """Every part, in order, into ``out`` (temp file, ``os.replace``); the parts folder removed."""
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    rows = 0
    meta = {b"funnel.model_version": job.version.encode(), b"funnel.k": str(job.k).encode()}
    with pq.ParquetWriter(tmp, SCHEMA.with_metadata(meta)) as writer:
        for p in range(job.n_parts):
            table = pq.read_table(part_path(job.folder, p)).cast(SCHEMA)
            rows += table.num_rows
            writer.write_table(table.replace_schema_metadata(meta))
    os.replace(tmp, out)
    job.remove()
    return rows
