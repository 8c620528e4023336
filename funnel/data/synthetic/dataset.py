"""``generate``: config in, tables and ground truth out; ``write_dataset`` / ``read_dataset``.

Randomness is split with ``numpy.random.SeedSequence(config.seed).spawn``: items, users, text and
sessions each have their own stream, so changing ``n_interactions`` leaves the catalogue and the
users unchanged, and the same config always gives byte-identical tables.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from funnel.core.artifacts import write_json_atomic
from funnel.core.errors import CorruptDataError, NotFoundError
from funnel.core.schema import IMPRESSIONS, INTERACTIONS, ITEMS, USERS
from funnel.data.synthetic.catalog import items_table, users_table
from funnel.data.synthetic.config import SyntheticConfig
from funnel.data.synthetic.sessions import simulate
from funnel.data.synthetic.tables import impressions_table, interactions_table, make_ids
from funnel.data.synthetic.truth import GroundTruth
from funnel.data.synthetic.world import build_truth

FORMAT_VERSION = 1
"""Version of the on-disk layout written by :func:`write_dataset`."""
KIND = "synthetic_dataset"
"""The ``kind`` recorded in ``dataset.json``."""
TABLES = ("items", "users", "interactions", "impressions")
"""The tables of a dataset, one Parquet file each."""
SCHEMAS = {"items": ITEMS, "users": USERS, "interactions": INTERACTIONS, "impressions": IMPRESSIONS}
"""The canonical schema of each table (applied when reading back)."""


@dataclass
class SyntheticDataset:
    """Tables in the canonical schemas plus the hidden truth they were sampled from.

    Row ``j`` of ``users`` / ``items`` is user / item index ``j`` of ``truth``. ``impressions`` holds
    one row per served slate (organic sessions have none).
    """

    config: SyntheticConfig
    items: pa.Table
    users: pa.Table
    interactions: pa.Table
    impressions: pa.Table
    truth: GroundTruth


def generate(
    config: SyntheticConfig | None = None, timings: dict[str, float] | None = None
) -> SyntheticDataset:
    """Sample a synthetic world and its interaction log.

    ``timings``, when given, receives the seconds spent per stage (``world``, ``catalog``,
    ``sessions``, ``tables``).

    Example:
        >>> ds = generate(SyntheticConfig(n_users=20, n_items=30, n_interactions=200, seed=1))
        >>> ds.items.num_rows, ds.users.num_rows, ds.interactions.num_rows >= 200
        (30, 20, True)
        >>> ds.interactions.column("item_id")[0].as_py()
        'i0000...'
        >>> ds.truth.top_k(0, 3).shape
        (3,)
    """
    cfg = config if config is not None else SyntheticConfig()
    clock = _Clock(timings)
    item_seq, user_seq, text_seq, session_seq = np.random.SeedSequence(cfg.seed).spawn(4)
    truth = build_truth(cfg, np.random.default_rng(item_seq), np.random.default_rng(user_seq))
    clock.lap("world")
    items, users = items_table(cfg, truth, np.random.default_rng(text_seq)), users_table(cfg, truth)
    clock.lap("catalog")
    log = simulate(truth, cfg, np.random.default_rng(session_seq))
    clock.lap("sessions")
    user_ids, item_ids = make_ids("u", truth.n_users), make_ids("i", truth.n_items)
    request_ids = make_ids("r", max(log.n_sessions, 1), 7)
    interactions = interactions_table(log, user_ids, item_ids, request_ids)
    impressions = impressions_table(log, user_ids, item_ids, request_ids)
    clock.lap("tables")
    return SyntheticDataset(cfg, items, users, interactions, impressions, truth)


class _Clock:
    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink, self.last = sink, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.sink is not None:
            self.sink[name] = now - self.last
        self.last = now


def write_dataset(dataset: SyntheticDataset, folder: str | Path) -> Path:
    """Write Parquet tables, ``truth.npz`` and the ``dataset.json`` manifest (last) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        tmp = folder / f"{name}.parquet.tmp"
        pq.write_table(getattr(dataset, name), tmp)
        os.replace(tmp, folder / f"{name}.parquet")
    tmp_npz = folder / "truth.tmp.npz"
    np.savez(tmp_npz, **dataset.truth.to_arrays())
    os.replace(tmp_npz, folder / "truth.npz")
    manifest = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "config": dataset.config.to_dict(),
        "rows": {name: getattr(dataset, name).num_rows for name in TABLES},
    }
    write_json_atomic(folder / "dataset.json", manifest)
    return folder


def read_dataset(folder: str | Path) -> SyntheticDataset:
    """Read a folder written by :func:`write_dataset` (checks kind and format version)."""
    folder = Path(folder)
    path = folder / "dataset.json"
    if not path.exists():
        raise NotFoundError(f"no synthetic dataset at {folder} (dataset.json missing)")
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != KIND or manifest.get("format_version") != FORMAT_VERSION:
        raise CorruptDataError(
            f"{folder}: {manifest.get('kind')!r} format_version {manifest.get('format_version')}, "
            f"this funnel reads {KIND!r} {FORMAT_VERSION}"
        )
    tables = {name: pq.read_table(folder / f"{name}.parquet").cast(SCHEMAS[name]) for name in TABLES}
    for name, table in tables.items():
        if table.num_rows != manifest["rows"][name]:
            raise CorruptDataError(
                f"{folder}: {name}.parquet has {table.num_rows} rows, manifest says {manifest['rows'][name]}"
            )
    with np.load(folder / "truth.npz", allow_pickle=False) as npz:
        truth = GroundTruth.from_arrays({k: npz[k] for k in npz.files})
    return SyntheticDataset(config=SyntheticConfig.from_dict(manifest["config"]), truth=truth, **tables)
