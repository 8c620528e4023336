"""Persisted artifacts without pickle: a JSON manifest plus NumPy arrays.

Every model, index and bundle is saved as a folder holding ``manifest.json`` (``format_version``,
``kind``, hyper-parameters and free metadata) and ``arrays.npz`` (dense arrays, and sparse
matrices split into their CSR parts). Loading uses ``allow_pickle=False`` and checks
``kind`` and ``format_version``.

Example:
    >>> import tempfile, numpy as np, scipy.sparse as sp
    >>> d = tempfile.mkdtemp()
    >>> save_artifact(d, "demo", 1, {"alpha": 0.5}, {"w": np.eye(2), "m": sp.csr_matrix(np.eye(2))})
    >>> art = load_artifact(d, "demo", 1)
    >>> art.params["alpha"], art.arrays["w"].shape, art.arrays["m"].nnz
    (0.5, (2, 2), 2)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from funnel.core.errors import CorruptDataError, NotFoundError

_SPARSE = "__csr__"


@dataclass
class Artifact:
    """A loaded artifact: its manifest fields and its arrays."""

    kind: str
    format_version: int
    params: dict[str, Any]
    meta: dict[str, Any]
    arrays: dict[str, Any]


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    _fsync_file(tmp)
    os.replace(tmp, path)


def save_artifact(
    folder: str | Path,
    kind: str,
    format_version: int,
    params: dict[str, Any],
    arrays: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> None:
    """Save ``arrays`` (NumPy arrays or SciPy sparse matrices) and a manifest into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if sp.issparse(value):
            csr = sp.csr_matrix(value)
            flat[f"{name}{_SPARSE}data"] = csr.data
            flat[f"{name}{_SPARSE}indices"] = csr.indices
            flat[f"{name}{_SPARSE}indptr"] = csr.indptr
            flat[f"{name}{_SPARSE}shape"] = np.asarray(csr.shape, dtype=np.int64)
        else:
            arr = np.asarray(value)
            if arr.dtype == object:
                raise TypeError(f"array {name!r} has dtype object; it cannot be saved without pickle")
            flat[name] = arr
    tmp = folder / "arrays.tmp.npz"
    np.savez(tmp, **flat)
    _fsync_file(tmp)
    os.replace(tmp, folder / "arrays.npz")
    manifest = {
        "kind": kind,
        "format_version": format_version,
        "params": params,
        "meta": meta or {},
    }
    write_json_atomic(folder / "manifest.json", manifest)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read ``folder/manifest.json``; raise ``NotFoundError`` when missing."""
    path = Path(folder) / "manifest.json"
    if not path.exists():
        raise NotFoundError(f"no artifact at {folder} (manifest.json missing)")
    return json.loads(path.read_text())


def load_artifact(folder: str | Path, kind: str, format_version: int) -> Artifact:
    """Load an artifact saved by :func:`save_artifact`, checking ``kind`` and version."""
    manifest = read_manifest(folder)
    if manifest.get("kind") != kind:
        raise CorruptDataError(f"{folder}: artifact kind {manifest.get('kind')!r}, expected {kind!r}")
    if manifest.get("format_version") != format_version:
        raise CorruptDataError(
            f"{folder}: {kind} format_version {manifest.get('format_version')}, "
            f"this funnel reads {format_version}"
        )
    arrays: dict[str, Any] = {}
    with np.load(Path(folder) / "arrays.npz", allow_pickle=False) as npz:
        parts: dict[str, dict[str, np.ndarray]] = {}
        for name in npz.files:
            if _SPARSE in name:
                base, part = name.split(_SPARSE)
                parts.setdefault(base, {})[part] = npz[name]
            else:
                arrays[name] = npz[name]
    for base, p in parts.items():
        arrays[base] = sp.csr_matrix(
            (p["data"], p["indices"], p["indptr"]), shape=tuple(int(x) for x in p["shape"])
        )
    return Artifact(kind, format_version, manifest.get("params", {}), manifest.get("meta", {}), arrays)
