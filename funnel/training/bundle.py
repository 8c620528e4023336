"""A trained bundle: everything the engine needs to serve one model version, in one folder.

Files (manifest written last, so a folder without one is an incomplete bundle)::

    manifest.json   format_version, version, model name, metrics, data window, sizes, log offset
    model/          the recommender's own artifact (manifest + arrays)
    state/          training history (users × items CSR), item popularity, listed flags
    users.arrow     user ids in index order (IdMap)
    items.arrow     item ids in index order (IdMap)
    titles.arrow    item titles in index order (for explanations)

Nothing is pickled; every file has a format version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from funnel.core.artifacts import load_artifact, read_manifest, save_artifact, write_json_atomic
from funnel.core.errors import CorruptDataError
from funnel.core.idmap import IdMap
from funnel.retrieval.base import Recommender
from funnel.retrieval.models import load_model

FORMAT_VERSION = 1


@dataclass
class Bundle:
    """One servable model version and the data it was trained on."""

    version: str
    model_name: str
    model: Recommender
    users: IdMap
    items: IdMap
    history: sp.csr_matrix
    popularity: np.ndarray
    listed: np.ndarray
    titles: pa.Array
    log_offset: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def title(self, item_index: int) -> str:
        """The item's title, or its id when the catalogue has none."""
        t = self.titles[int(item_index)].as_py() if item_index < len(self.titles) else None
        return t or self.items.key(item_index)

    def save(self, folder: str | Path) -> None:
        """Write the bundle into ``folder`` (the manifest last)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / "model")
        save_artifact(
            folder / "state",
            "bundle_state",
            FORMAT_VERSION,
            {},
            {"history": self.history, "popularity": self.popularity, "listed": self.listed},
        )
        self.users.save(folder / "users.arrow")
        self.items.save(folder / "items.arrow")
        _save_titles(folder / "titles.arrow", self.titles)
        write_json_atomic(
            folder / "manifest.json",
            {
                "kind": "bundle",
                "format_version": FORMAT_VERSION,
                "version": self.version,
                "model": self.model_name,
                "log_offset": self.log_offset,
                "n_users": len(self.users),
                "n_items": len(self.items),
                "metrics": self.metrics,
                "meta": self.meta,
            },
        )

    @staticmethod
    def read_log_offset(folder: str | Path) -> int:
        """The event-log offset a saved bundle's data ends at (from its manifest only)."""
        return int(read_manifest(Path(folder)).get("log_offset", 0))

    @classmethod
    def load(cls, folder: str | Path) -> Bundle:
        """Read a bundle written by :meth:`save`, checking its format version."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest.get("kind") != "bundle" or manifest.get("format_version") != FORMAT_VERSION:
            raise CorruptDataError(
                f"{folder}: not a funnel bundle of format_version {FORMAT_VERSION} "
                f"(kind={manifest.get('kind')!r}, format_version={manifest.get('format_version')!r})"
            )
        state = load_artifact(folder / "state", "bundle_state", FORMAT_VERSION).arrays
        return cls(
            version=manifest["version"],
            model_name=manifest["model"],
            model=load_model(folder / "model"),
            users=IdMap.load(folder / "users.arrow"),
            items=IdMap.load(folder / "items.arrow"),
            history=state["history"].tocsr(),
            popularity=state["popularity"],
            listed=state["listed"].astype(bool),
            titles=_load_titles(folder / "titles.arrow"),
            log_offset=int(manifest.get("log_offset", 0)),
            metrics=manifest.get("metrics", {}),
            meta=manifest.get("meta", {}),
        )


def _save_titles(path: Path, titles: pa.Array) -> None:
    schema = pa.schema([("title", pa.string())], metadata={"format_version": str(FORMAT_VERSION)})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(pa.table({"title": titles.cast(pa.string())}, schema=schema))


def _load_titles(path: Path) -> pa.Array:
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all().column("title").combine_chunks()
