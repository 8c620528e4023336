"""The pinned state of a batch precompute run (:mod:`funnel.batch`): ``<out>.parts/``.

``job.json`` records what every part is computed from (version, event-log end, ``k``, part
size, user count); ``users.arrow`` the users in order (the version's, those first seen in the
log since, the lake's users without interactions); ``part-NNNNN.parquet`` the finished parts.
A rerun reads the folder back instead of looking at the registry and the log again.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from pathlib import Path
    >>> from funnel.engine import Engine
    >>> d = Path(tempfile.mkdtemp())
    >>> eng = Engine(d)
    >>> _ = eng.import_interactions(pa.table({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "a"],
    ...                                      "timestamp": [1_700_000_000, 1_700_000_001, 1_700_000_002]}))
    >>> _ = eng.train(model="pop")
    >>> job = open_job(reader(d), d / "top.parquet", k=5, part_size=2)
    >>> job.n_parts, job.part_users(1), part_path(job.folder, 1).name
    (2, ['u3'], 'part-00001.parquet')
    >>> open_job(reader(d), d / "top.parquet", k=7, part_size=2)
    Traceback (most recent call last):
    ...
    funnel.core.errors.ValidationError: --k: ... was started with --k 5 and part size 2: ...
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from funnel.core.artifacts import write_json_atomic
from funnel.core.errors import NotTrainedError, ValidationError
from funnel.core.idmap import IdMap
from funnel.engine import Engine
from funnel.events.tables import interactions_table
from funnel.monitoring.logview import open_readonly

FORMAT_VERSION = 1
_READ = 10_000


@dataclass(frozen=True)
class BatchJob:
    """One pinned run; see the module docstring."""

    data_dir: str
    folder: str
    version: str
    log_end: int
    k: int
    part_size: int
    n_users: int

    @property
    def out(self) -> Path:
        """The output file (the parts folder without its ``.parts`` suffix)."""
        return Path(self.folder).with_suffix("")

    @property
    def n_parts(self) -> int:
        """How many parts the users are cut into."""
        return math.ceil(self.n_users / self.part_size)

    def part_users(self, part: int) -> list[str]:
        """The user ids of part ``part``, in order."""
        with pa.memory_map(str(Path(self.folder) / "users.arrow"), "r") as source:
            ids = pa.ipc.open_file(source).read_all().column("user_id")
        return ids.slice(part * self.part_size, self.part_size).to_pylist()

    def remove(self) -> None:
        """Delete the parts folder (the run is complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def part_path(folder: str | Path, part: int) -> Path:
    """Where part ``part`` is written."""
    return Path(folder) / f"part-{part:05d}.parquet"


def reader(data_dir: str | Path) -> Engine:
    """An engine over ``data_dir`` reading its ``file://`` event log without the writer lock.

    ``funnel serve`` holds that lock while it runs; a batch run beside it only reads the log.
    """
    engine = Engine(data_dir)
    engine._log = open_readonly(engine.event_log_url)
    return engine


def open_job(engine: Engine, out: Path, k: int, part_size: int) -> BatchJob:
    """The job of ``out``: read back from ``<out>.parts/``, or pinned now (live version, log end)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise ValidationError(f"must be an integer from 1 to 1000, got {k!r}", field="--k")
    if isinstance(part_size, bool) or not isinstance(part_size, int) or part_size < 1:
        raise ValidationError(f"must be a positive integer, got {part_size!r}", field="--part-size")
    folder = out.with_name(out.name + ".parts")
    manifest = folder / "job.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ValidationError(f"{folder} is not a batch run this version reads; delete it", field="--out")
        job = BatchJob(**{f: data[f] for f in BatchJob.__dataclass_fields__})
        if (job.k, job.part_size) != (k, part_size):
            raise ValidationError(
                f"{folder} was started with --k {job.k} and part size {job.part_size}: rerun with those, "
                "or delete the folder to start over",
                field="--k",
            )
        engine.registry.path(job.version)  # still there (NotFoundError otherwise)
        return job
    version = engine.registry.live()
    if version is None:
        raise NotTrainedError(f"no trained model in {engine.data_dir}: run `funnel train` first")
    bundle = engine.registry.path(version)
    log_end = engine.event_log.end_offset
    users = _users(
        engine, IdMap.load(bundle / "users.arrow"), engine.registry.manifest(version).log_offset, log_end
    )
    folder.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(folder / "users.arrow"), "wb") as sink:
        table = pa.table({"user_id": pa.array(users, pa.string())})
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    job = BatchJob(str(engine.data_dir), str(folder), version, log_end, k, part_size, len(users))
    write_json_atomic(manifest, {"kind": "batch_job", "format_version": FORMAT_VERSION, **asdict(job)})
    return job


def _users(engine: Engine, known: IdMap, start: int, end: int) -> list[str]:
    """The version's users in index order, those first seen in the log in ``[start, end)``, the rest.

    The rest: the lake's users without interactions (they get their segment's cold-start page).
    """
    users = known.keys.to_pylist()
    have = set(users)

    def extend(ids: list[str]) -> None:
        for user in ids:
            if user not in have:
                have.add(user)
                users.append(user)

    offset = start
    while offset < end:
        batch = engine.event_log.read(offset, min(_READ, end - offset))
        if not batch:
            break
        extend(interactions_table(batch).column("user_id").to_pylist())
        offset = batch[-1].offset + 1
    extend(engine.lake.read("users", columns=["user_id"]).column("user_id").to_pylist())
    return users
