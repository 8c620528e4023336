"""Shared helpers for benchmarks: write a JSON result file and print a plain-text table.

Example:
    >>> print_table([{"benchmark": "import", "rows": 10_000_000, "rows_per_s": 812345.6}])
    benchmark      rows  rows_per_s
    import   10,000,000   812,345.6
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ.get("FUNNEL_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
"""Where results go; ``FUNNEL_BENCH_RESULTS`` overrides it (``run_all --quick`` writes to a temp dir)."""


def machine_meta() -> dict[str, Any]:
    """Facts that make a benchmark number interpretable: Python, platform, CPUs, load."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.system(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "argv": sys.argv[1:],
    }


def write_results(name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write ``{"name", "meta", "rows"}`` to ``benchmarks/results/<name>.json`` (atomically)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"name": name, "meta": meta, "rows": rows}, indent=2) + "\n")
    tmp.replace(out)
    return out


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print rows as aligned columns (union of keys, first-seen order); text left, numbers right."""
    if not rows:
        return
    keys = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(k, "")) for k in keys] for row in rows]
    numeric = [all(isinstance(row.get(k), int | float) for row in rows if k in row) for k in keys]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    print(line(keys))
    for c in cells:
        print(line(c))
