"""A trained bundle: everything the engine needs to serve one model version, in one folder.

Files (manifest written last, so a folder without one is an incomplete bundle)::

    manifest.json   the registry's record of the version (funnel.training.manifest.ModelManifest):
                    format version, status, parent, data window, config hash, metrics, ...
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

from funnel.core.artifacts import load_artifact, save_artifact
from funnel.core.idmap import IdMap
from funnel.retrieval.base import Recommender
from funnel.retrieval.models import load_model
from funnel.training.manifest import DataWindow, ModelManifest

FORMAT_VERSION = 1
"""Format of the bundle's ``state`` arrays and ``titles.arrow`` (the manifest has its own)."""


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
    parent_version: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    manifest: ModelManifest | None = None
    """As loaded (:meth:`load`); :meth:`save` writes a fresh ``candidate`` manifest."""

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
        window = DataWindow(
            self.meta.get("time_min_ms"),
            self.meta.get("time_max_ms"),
            int(self.meta.get("n_interactions", 0)),
            self.log_offset,
        )
        self.manifest = ModelManifest(
            self.version,
            self.model_name,
            parent_version=self.parent_version,
            data_window=window,
            config=self.config,
            n_users=len(self.users),
            n_items=len(self.items),
            metrics=self.metrics,
            meta=self.meta,
        )
        self.manifest.write(folder)

    @staticmethod
    def read_log_offset(folder: str | Path) -> int:
        """The event-log offset a saved bundle's data ends at (from its manifest only)."""
        return ModelManifest.read(folder).log_offset

    @classmethod
    def load(cls, folder: str | Path) -> Bundle:
        """Read a bundle written by :meth:`save`, checking its format version."""
        folder = Path(folder)
        manifest = ModelManifest.read(folder)
        state = load_artifact(folder / "state", "bundle_state", FORMAT_VERSION).arrays
        return cls(
            version=manifest.version,
            model_name=manifest.model,
            model=load_model(folder / "model"),
            users=IdMap.load(folder / "users.arrow"),
            items=IdMap.load(folder / "items.arrow"),
            history=state["history"].tocsr(),
            popularity=state["popularity"],
            listed=state["listed"].astype(bool),
            titles=_load_titles(folder / "titles.arrow"),
            log_offset=manifest.log_offset,
            metrics=manifest.metrics,
            meta=manifest.meta,
            parent_version=manifest.parent_version,
            config=manifest.config,
            manifest=manifest,
        )


def _save_titles(path: Path, titles: pa.Array) -> None:
    schema = pa.schema([("title", pa.string())], metadata={"format_version": str(FORMAT_VERSION)})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(pa.table({"title": titles.cast(pa.string())}, schema=schema))


def _load_titles(path: Path) -> pa.Array:
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all().column("title").combine_chunks()
