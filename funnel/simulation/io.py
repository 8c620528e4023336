"""Simulation outputs on disk: ``simulation.json`` (metrics only) and ``daily.parquet``, versioned.

``simulation.json`` holds the format version, the world's config, and per scenario its settings,
daily metrics, summary and retrain outcomes — nothing measured in wall time, so two runs with one
seed and config are byte-identical (:func:`metrics_json`). ``daily.parquet`` is the same daily
metrics as one row per scenario and day. Timings go to ``timings.json`` beside them. Read back
with :func:`read_simulation` (no pickle anywhere).

Example:
    >>> import tempfile
    >>> from funnel.simulation.config import Scenario, SimConfig
    >>> from funnel.simulation.runner import SimResult
    >>> r = SimResult(Scenario(), [{"day": 0, "ctr": 0.1}], {"pages": 3})
    >>> folder = write_simulation(tempfile.mkdtemp(), SimConfig(users=10, days=1), [r])
    >>> read_simulation(folder)["scenarios"]["default"]["days"]
    [{'ctr': 0.1, 'day': 0}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from funnel.core.artifacts import write_json_atomic
from funnel.core.errors import CorruptDataError, NotFoundError
from funnel.simulation.config import SimConfig
from funnel.simulation.runner import SimResult

FORMAT_VERSION = 1
"""Version of ``simulation.json`` / ``daily.parquet``."""
KIND = "funnel_simulation"
JSON_FILE, PARQUET_FILE, TIMINGS_FILE = "simulation.json", "daily.parquet", "timings.json"


def metrics_document(config: SimConfig, results: list[SimResult]) -> dict[str, Any]:
    """The metrics-only document (no timings): what ``--json`` writes."""
    return {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "scenarios": {
            r.scenario.name: {
                "scenario": r.scenario.to_dict(),
                "days": r.days,
                "summary": r.summary,
                "retrains": r.retrains,
            }
            for r in results
        },
    }


def metrics_json(config: SimConfig, results: list[SimResult]) -> str:
    """:func:`metrics_document` as canonical JSON text (sorted keys, fixed separators)."""
    return json.dumps(metrics_document(config, results), sort_keys=True, indent=1) + "\n"


def daily_table(results: list[SimResult]) -> pa.Table:
    """One row per scenario and day (columns: ``scenario`` then the metrics)."""
    rows = [{"scenario": r.scenario.name, **day} for r in results for day in r.days]
    return pa.Table.from_pylist(rows)


def write_simulation(folder: str | Path, config: SimConfig, results: list[SimResult]) -> Path:
    """Write ``simulation.json``, ``daily.parquet`` and ``timings.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = daily_table(results)
    meta = {b"kind": KIND.encode(), b"format_version": str(FORMAT_VERSION).encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    tmp = folder / (PARQUET_FILE + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(folder / PARQUET_FILE)
    write_json_atomic(folder / TIMINGS_FILE, {r.scenario.name: r.timings for r in results})
    text = metrics_json(config, results)
    tmp = folder / (JSON_FILE + ".tmp")
    tmp.write_text(text)
    tmp.replace(folder / JSON_FILE)
    return folder


def read_simulation(folder: str | Path) -> dict[str, Any]:
    """The metrics document of a folder written by :func:`write_simulation` (kind and version checked)."""
    path = Path(folder) / JSON_FILE
    if not path.exists():
        raise NotFoundError(f"no simulation results in {folder} ({JSON_FILE} missing): run `funnel simulate`")
    doc = json.loads(path.read_text())
    if doc.get("kind") != KIND or doc.get("format_version") != FORMAT_VERSION:
        raise CorruptDataError(
            f"{path}: {doc.get('kind')!r} format_version {doc.get('format_version')}, "
            f"this funnel reads {KIND!r} {FORMAT_VERSION}"
        )
    return doc


def read_daily(folder: str | Path) -> pa.Table:
    """``daily.parquet`` of a simulation folder (format version checked)."""
    path = Path(folder) / PARQUET_FILE
    if not path.exists():
        raise NotFoundError(f"no simulation results in {folder} ({PARQUET_FILE} missing)")
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if meta.get(b"kind") != KIND.encode() or meta.get(b"format_version") != str(FORMAT_VERSION).encode():
        raise CorruptDataError(f"{path}: not a {KIND} table of format_version {FORMAT_VERSION}")
    return table
