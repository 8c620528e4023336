"""The model registry: versioned bundles under ``<data_dir>/models/`` and a pointer to the live one.

Layout::

    models/
      20261122-105100-3fa2c1/     one bundle per training run (see funnel.training.bundle)
        manifest.json
        ...
      LIVE                        the live version's name, replaced atomically

Promotion writes ``LIVE`` with a temp file and ``os.replace``, so a reader sees either the old or
the new version, never a half-written pointer.

Example:
    >>> import tempfile
    >>> reg = ModelRegistry(tempfile.mkdtemp())
    >>> reg.live() is None
    True
    >>> v = reg.new_version(); (reg.root / v).mkdir(); reg.promote(v)
    >>> reg.live() == v
    True
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from funnel.core.errors import NotFoundError


class ModelRegistry:
    """Versions of trained bundles and which one is live."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def new_version(self) -> str:
        """A fresh, sortable version name (UTC time plus a random suffix)."""
        return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]

    def versions(self) -> list[str]:
        """Every complete bundle (one with a manifest), oldest first."""
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").exists())

    def path(self, version: str) -> Path:
        """The folder of ``version``; raises ``NotFoundError`` when it does not exist."""
        folder = self.root / version
        if not folder.is_dir():
            known = ", ".join(self.versions()) or "none"
            raise NotFoundError(f"model version {version!r} not found; known versions: {known}")
        return folder

    def live(self) -> str | None:
        """The live version, or None before the first promotion."""
        pointer = self.root / "LIVE"
        if not pointer.exists():
            return None
        return pointer.read_text().strip() or None

    def promote(self, version: str) -> None:
        """Make ``version`` live, atomically."""
        self.path(version)
        tmp = self.root / f".LIVE.{uuid.uuid4().hex}"
        tmp.write_text(version + "\n")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / "LIVE")
