"""``ModelManifest``: what the registry knows about one model version (``models/<version>/manifest.json``).

Fields (JSON, written atomically; the manifest is the last file of a bundle, so a folder without
one is an incomplete bundle and not a version):

* ``kind`` (``"bundle"``), ``format_version`` (:data:`FORMAT_VERSION`; 1 is still read, its
  registry fields take the defaults below), ``version``, ``model`` (the baseline's name);
* ``status``: ``candidate`` (trained, not judged yet), ``live``, ``rejected`` (with ``reason``)
  or ``retired`` (was live, replaced or rolled back; ``reason`` says which);
* ``parent_version``: the live version when this one was trained (``null`` for the first);
* ``data_window``: ``start_ms`` / ``end_ms`` (event times, epoch ms), ``n_interactions`` and the
  event-log ``log_offset`` the data ends at;
* ``config`` and ``config_hash`` (``sha256:`` + 16 hex of the canonical JSON of ``config``: the
  training settings, so two versions trained alike share it);
* ``feature_version`` (:data:`funnel.features.definitions.FEATURE_VERSION`), ``package_version``;
* ``created_at_ms``, ``status_changed_at_ms``; ``metrics`` (model selection and the gate's
  report under ``"gate"``); ``meta``; ``n_users``, ``n_items``, ``log_offset`` (kept at the top
  level for readers of format 1).

Example:
    >>> m = ModelManifest("20260101-000000-abcdef", "ease", config={"model": "auto", "k": 10})
    >>> d = m.to_dict()
    >>> d["status"], d["config_hash"] == config_hash({"k": 10, "model": "auto"})
    ('candidate', True)
    >>> ModelManifest.from_dict(d) == m
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from funnel.core.artifacts import read_manifest, write_json_atomic
from funnel.core.errors import CorruptDataError

FORMAT_VERSION = 2
"""Bundle manifest format: 2 added the registry fields (status, parent, data window, hashes)."""
READABLE_FORMATS = (1, 2)
STATUSES = ("candidate", "live", "rejected", "retired")
"""Every status a version can have."""


def config_hash(config: dict[str, Any]) -> str:
    """``sha256:`` and the first 16 hex digits of the canonical JSON of ``config``."""
    body = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()[:16]


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (in nested dicts and lists) replaced by ``None``.

    JSON has no NaN: the CLI's ``--json`` and the admin API print manifests through this.

    >>> finite({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return int(time.time() * 1000)


@dataclass
class DataWindow:
    """The training data of a version: event-time range (epoch ms), size and log offset."""

    start_ms: int | None = None
    end_ms: int | None = None
    n_interactions: int = 0
    log_offset: int = 0


def _package_version() -> str:
    from funnel import __version__

    return __version__


def _feature_version() -> str:
    from funnel.features.definitions import FEATURE_VERSION

    return FEATURE_VERSION


@dataclass
class ModelManifest:
    """One version's manifest; see the module docstring for the fields."""

    version: str
    model: str
    status: str = "candidate"
    reason: str | None = None
    parent_version: str | None = None
    data_window: DataWindow = field(default_factory=DataWindow)
    config: dict[str, Any] = field(default_factory=dict)
    feature_version: str = field(default_factory=_feature_version)
    package_version: str = field(default_factory=_package_version)
    created_at_ms: int = field(default_factory=now_ms)
    status_changed_at_ms: int | None = None
    n_users: int = 0
    n_items: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def config_hash(self) -> str:
        """The hash of :attr:`config` (see :func:`config_hash`)."""
        return config_hash(self.config)

    @property
    def log_offset(self) -> int:
        """The event-log offset the training data ends at."""
        return self.data_window.log_offset

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json`` (always the current format)."""
        out = asdict(self)
        out.update(
            kind="bundle",
            format_version=FORMAT_VERSION,
            config_hash=self.config_hash,
            log_offset=self.data_window.log_offset,
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> ModelManifest:
        """Parse a manifest of any readable format; raises ``CorruptDataError`` naming ``where``."""
        fmt = data.get("format_version")
        if data.get("kind") != "bundle" or fmt not in READABLE_FORMATS:
            raise CorruptDataError(
                f"{where}: not a funnel bundle of format_version {' or '.join(map(str, READABLE_FORMATS))} "
                f"(kind={data.get('kind')!r}, format_version={fmt!r})"
            )
        try:
            meta = dict(data.get("meta") or {})
            window = data.get("data_window") or {
                "start_ms": meta.get("time_min_ms"),
                "end_ms": meta.get("time_max_ms"),
                "n_interactions": meta.get("n_interactions", 0),
                "log_offset": data.get("log_offset", 0),
            }
            status = data.get("status", "candidate")
            if status not in STATUSES:
                raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
            return cls(
                version=str(data["version"]),
                model=str(data["model"]),
                status=status,
                reason=data.get("reason"),
                parent_version=data.get("parent_version"),
                data_window=DataWindow(**window),
                config=dict(data.get("config") or {}),
                feature_version=str(data.get("feature_version", "unknown")),
                package_version=str(data.get("package_version", "unknown")),
                created_at_ms=int(data.get("created_at_ms", 0)),
                status_changed_at_ms=data.get("status_changed_at_ms"),
                n_users=int(data.get("n_users", 0)),
                n_items=int(data.get("n_items", 0)),
                metrics=dict(data.get("metrics") or {}),
                meta=meta,
                format_version=int(fmt),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDataError(f"{where}: bad manifest field: {exc}") from None

    @classmethod
    def read(cls, folder: str | Path) -> ModelManifest:
        """The manifest of the bundle in ``folder``."""
        folder = Path(folder)
        return cls.from_dict(read_manifest(folder), str(folder / "manifest.json"))

    def write(self, folder: str | Path) -> None:
        """Write (or replace) ``folder/manifest.json`` atomically."""
        write_json_atomic(Path(folder) / "manifest.json", self.to_dict())
