"""The model registry: versioned bundles under ``<data_dir>/models/``, their status, the live one.

Layout::

    models/
      20261122-105100.042-3fa2c1/ one bundle per training run (see funnel.training.bundle)
        manifest.json             status, parent, data window, metrics, ... (ModelManifest)
        ...
      LIVE                        the live version's name, replaced atomically
      history.json                every promotion and rollback, oldest first
      .lock                       serialises promotions between processes (flock)

Promotion writes ``LIVE`` with a temp file, fsync and ``os.replace``: a reader sees the old or the
new version, never a half-written pointer. ``LIVE`` is the one source of truth for which version
is live; ``history.json`` and the manifests' ``status`` are written after it, and
:meth:`ModelRegistry.live_stack` reconciles a history that missed its last entry (a crash
between the two writes), so :meth:`ModelRegistry.rollback` always returns to the version that was
live before the current one.

Example:
    >>> import tempfile
    >>> from funnel.training.manifest import ModelManifest
    >>> reg = ModelRegistry(tempfile.mkdtemp())
    >>> reg.live() is None
    True
    >>> for v in ("v1", "v2"):
    ...     (reg.root / v).mkdir(); ModelManifest(v, "pop").write(reg.root / v)
    >>> reg.promote("v1"), reg.promote("v2"), reg.status("v1")
    (None, 'v1', 'retired')
    >>> reg.rollback(), reg.live(), reg.status("v2")
    ('v1', 'v1', 'retired')
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from funnel.core.artifacts import write_json_atomic
from funnel.core.errors import ConflictError, CorruptDataError, NotFoundError, ValidationError
from funnel.training.manifest import STATUSES, ModelManifest, now_ms

HISTORY_FORMAT = 1
"""Format of ``history.json``."""
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_version_name(version: str) -> str:
    """``version`` if it can name a version folder, else ``ValidationError`` (no paths, no dot-files)."""
    if not isinstance(version, str) or not _VERSION_NAME.match(version):
        raise ValidationError(
            f"{version!r} is not a version name (letters, digits, '.', '_', '-'; see `funnel models list`)",
            field="version",
        )
    return version


class ModelRegistry:
    """Versions of trained bundles, their status, and which one is live (module docstring)."""

    def __init__(self, root: str | Path, create: bool = True) -> None:
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)

    def new_version(self) -> str:
        """A fresh version name that sorts by creation time: UTC time to the millisecond, random suffix.

        E.g. ``20261122-105100.042-3fa2c1`` (two versions trained within one second keep their order).
        """
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        return f"{stamp}.{int(now * 1000) % 1000:03d}-{uuid.uuid4().hex[:6]}"

    def versions(self) -> list[str]:
        """Every complete bundle (one with a manifest), oldest first; hidden folders are scratch."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / "manifest.json").exists()
        )

    def path(self, version: str) -> Path:
        """The folder of ``version``; raises ``NotFoundError`` when it is not a complete bundle."""
        folder = self.root / check_version_name(version)
        if not (folder / "manifest.json").is_file():
            known = ", ".join(self.versions()) or "none"
            raise NotFoundError(f"model version {version!r} not found; known versions: {known}")
        return folder

    def manifest(self, version: str) -> ModelManifest:
        """The manifest of ``version``, with its status as the registry sees it (``LIVE`` wins)."""
        manifest = ModelManifest.read(self.path(version))
        manifest.status = self._effective_status(version, manifest.status, self.live())
        return manifest

    def manifests(self) -> list[ModelManifest]:
        """Every version's manifest (as :meth:`manifest`), oldest first."""
        live = self.live()
        out = []
        for version in self.versions():
            m = ModelManifest.read(self.root / version)
            m.status = self._effective_status(version, m.status, live)
            out.append(m)
        return out

    @staticmethod
    def _effective_status(version: str, recorded: str, live: str | None) -> str:
        if version == live:
            return "live"
        return "retired" if recorded == "live" else recorded  # a write after LIVE was lost

    def status(self, version: str) -> str:
        """``candidate``, ``live``, ``rejected`` or ``retired``."""
        return self.manifest(version).status

    def live(self) -> str | None:
        """The live version, or None before the first promotion."""
        pointer = self.root / "LIVE"
        if not pointer.exists():
            return None
        return pointer.read_text().strip() or None

    # ---- changes (under the registry lock) -------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def set_status(self, version: str, status: str, reason: str | None = None, **metrics: Any) -> None:
        """Record ``status`` (and ``reason``; ``metrics`` entries merged in) in ``version``'s manifest.

        ``live`` is set by :meth:`promote` only.
        """
        if status not in STATUSES or status == "live":
            raise ValidationError(
                f"must be one of candidate, rejected, retired, got {status!r}", field="status"
            )
        with self._locked():
            self._write_status(version, status, reason, metrics)

    def _write_status(self, version: str, status: str, reason: str | None, metrics: dict[str, Any]) -> None:
        folder = self.path(version)
        manifest = ModelManifest.read(folder)
        manifest.status, manifest.reason = status, reason
        manifest.status_changed_at_ms = now_ms()
        manifest.metrics.update(metrics)
        manifest.write(folder)

    def promote(self, version: str, note: str = "promoted") -> str | None:
        """Make ``version`` live, atomically; returns the version live before (``None``: none).

        Any complete version can be promoted (a rejected one too: this is the manual override).
        Promoting the live version changes nothing.
        """
        with self._locked():
            self.path(version)
            previous = self.live()
            if previous == version:
                return previous
            self._point_live(version)
            self._append_history("promote", version, previous, note)
            self._mark_live(version, previous, f"replaced by {version}")
        return previous

    def manual_promote(self, version: str, force: bool = False) -> str | None:
        """:meth:`promote` on an operator's request (CLI, admin API); returns the previous live version.

        A version the gate rejected, or has not judged (``candidate``), needs ``force``; a retired
        one (live before) does not.
        """
        manifest = self.manifest(version)
        if manifest.status in ("rejected", "candidate") and not force:
            if manifest.status == "rejected":
                why = f"was rejected by the gate ({manifest.reason})"
            else:
                why = "has not been judged by the gate (status candidate)"
            raise ValidationError(
                f"{version} {why}; add --force (API: force=true) to promote it", field="force"
            )
        return self.promote(version, note="promoted by an operator" + (" (forced)" if force else ""))

    def rollback(self, note: str = "rolled back") -> str:
        """Make the version live before the current one live again; returns it.

        Raises ``ConflictError`` when there is nothing to return to (no live version, or the
        live one is the first ever promoted).
        """
        with self._locked():
            stack = self.live_stack()
            if len(stack) < 2:
                live = f"before {stack[-1]}" if stack else "yet"
                raise ConflictError(
                    f"nothing to roll back to: no version was live {live}; "
                    "promote one instead (funnel models promote VERSION)"
                )
            current, target = stack[-1], stack[-2]
            self.path(target)
            self._point_live(target)
            self._append_history("rollback", target, current, note)
            self._mark_live(target, current, f"rolled back to {target}")
        return target

    def _point_live(self, version: str) -> None:
        tmp = self.root / f".LIVE.{uuid.uuid4().hex}"
        try:
            tmp.write_text(version + "\n")
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.root / "LIVE")
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _mark_live(self, version: str, previous: str | None, retired_reason: str) -> None:
        folder = self.path(version)
        manifest = ModelManifest.read(folder)
        manifest.status, manifest.reason, manifest.status_changed_at_ms = "live", None, now_ms()
        manifest.write(folder)
        if previous is not None and (self.root / previous / "manifest.json").exists():
            self._write_status(previous, "retired", retired_reason, {})

    # ---- history -----------------------------------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        """Every promotion and rollback, oldest first: ``action, version, previous, at_ms, note``."""
        path = self.root / "history.json"
        if not path.exists():
            return []
        data = json.loads(path.read_text())
        if data.get("kind") != "promotion_history" or data.get("format_version") != HISTORY_FORMAT:
            raise CorruptDataError(f"{path}: not a promotion history of format_version {HISTORY_FORMAT}")
        return list(data["entries"])

    def _append_history(self, action: str, version: str, previous: str | None, note: str) -> None:
        entry = {"action": action, "version": version, "previous": previous, "at_ms": now_ms(), "note": note}
        body = {"kind": "promotion_history", "format_version": HISTORY_FORMAT}
        write_json_atomic(self.root / "history.json", {**body, "entries": [*self.history(), entry]})

    def live_stack(self) -> list[str]:
        """The versions a chain of rollbacks would return to, the live one last.

        Replays :meth:`history` (a promotion pushes, a rollback pops) and puts the live version on
        top when the history missed it.
        """
        stack: list[str] = []
        for entry in self.history():
            if entry["action"] == "rollback":
                while stack and stack[-1] != entry["version"]:
                    stack.pop()
                if not stack:
                    stack.append(entry["version"])
            else:
                stack.append(entry["version"])
        live = self.live()
        if live is not None and (not stack or stack[-1] != live):
            stack.append(live)
        return stack

    def previous_live(self) -> str | None:
        """The version :meth:`rollback` would make live, or None."""
        stack = self.live_stack()
        return stack[-2] if len(stack) >= 2 else None
