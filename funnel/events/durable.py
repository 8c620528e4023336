"""Small durable-file primitives for the ``file://`` event log: full writes, atomic replace, lock.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> write_atomic(d / "offsets.json", {"trainer": 12})
    >>> load_json(d / "offsets.json", {}), load_json(d / "missing.json", {})
    ({'trainer': 12}, {})
    >>> fd = acquire_lock(d / "lock")
    >>> acquire_lock(d / "lock")
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConflictError: ... is already open for writing (pid ...); an event log has one writer
    >>> os.close(fd)
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from funnel.core.errors import ConflictError, CorruptDataError


def acquire_lock(path: Path) -> int:
    """Take the exclusive, non-blocking ``flock`` on ``path``; return its fd (close it to release).

    Writes the pid into the file so that the ``ConflictError`` a second writer gets names the holder.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConflictError(
            f"{path.parent} is already open for writing (pid {holder}); an event log has one writer"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def load_json(path: Path, default: Any) -> Any:
    """Parse the JSON file ``path``; ``default`` when missing; ``CorruptDataError`` when unreadable."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise CorruptDataError(f"{path}: not valid JSON ({exc})") from exc


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte of ``data`` is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_file(path: Path, data: bytes) -> None:
    """Create or replace the content of ``path`` with ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` by a JSON document atomically: write a temp file, fsync, rename, fsync the dir."""
    tmp = path.with_name(path.name + ".tmp")
    write_file(tmp, json.dumps(data, sort_keys=True).encode())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Fsync directory ``path`` so that created, renamed or deleted entries are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
