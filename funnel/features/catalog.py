"""The item catalogue the feature paths look items up in: categories, creator, publication time.

:class:`Catalog` serves the streaming path (an item's categories and creator for the user x
category / creator counters), serving (:meth:`Catalog.item_meta`: the candidates' catalogue facts
as arrays of codes, see :class:`~funnel.features.vectors.ItemMeta`) and materialisation
(:meth:`Catalog.meta_rows`: the ``meta`` hashes of the online store).

Example:
    >>> c = Catalog({"i1": ("news", "sports"), "i2": ("news",)}, {"i1": "c1", "i2": None}, {"i1": 0})
    >>> m = c.item_meta(["i2", "x", "i1"])
    >>> m.category_codes.tolist(), m.creator_codes.tolist(), m.published_at.tolist()
    ([[0, -1], [-1, -1], [0, 1]], [-1, -1, 0], [nan, nan, 0.0])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat

import numpy as np
import pyarrow as pa

from funnel.features.online.protocol import feature_key
from funnel.features.vectors import ItemMeta


@dataclass
class Catalog:
    """Item -> (categories, creator, published_at ms) lookups for the streaming and serving paths.

    Treat it as immutable once used: :meth:`item_meta` codes the whole catalogue on first use
    (a row per item, category and creator vocabularies) and keeps that.
    """

    categories: dict[str, tuple[str, ...]]
    creators: dict[str, str | None]
    published_at: dict[str, int | None]
    _coded: tuple | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_items(cls, items: pa.Table) -> Catalog:
        """Build from a table in the ``ITEMS`` schema (latest row per item wins)."""
        ids = items.column("item_id").to_pylist()
        cats = items.column("categories").to_pylist()
        creators = items.column("creator_id").to_pylist()
        pub = items.column("published_at").cast(pa.int64()).to_pylist()
        return cls(
            {i: tuple(c or ()) for i, c in zip(ids, cats, strict=True)},
            dict(zip(ids, creators, strict=True)),
            dict(zip(ids, pub, strict=True)),
        )

    def item_meta(self, item_ids: Sequence[str]) -> ItemMeta:
        """The :class:`~funnel.features.vectors.ItemMeta` of ``item_ids`` (unknown: none, NaN)."""
        return self.meta_at(self.rows_of(item_ids))

    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Each item's row in the coded catalogue (unknown items: the empty row), for :meth:`meta_at`.

        A string lookup per item: a caller reading the same items again (a server numbering its
        catalogue once) keeps these rows and skips the hashing, which dominates on large
        catalogues (about 4 ms per 1000 lookups in a dict of a million ids).
        """
        index, pad = self._codes()[:2]
        return np.fromiter(map(index.get, item_ids, repeat(pad)), np.intp, len(item_ids))

    def meta_at(self, rows: np.ndarray) -> ItemMeta:
        """The :class:`~funnel.features.vectors.ItemMeta` of catalogue ``rows`` (from :meth:`rows_of`)."""
        _, _, pub, cat_codes, creator_codes, cat_vocab, creator_vocab = self._codes()
        return ItemMeta(pub[rows], cat_codes[rows], creator_codes[rows], cat_vocab, creator_vocab)

    def _codes(self) -> tuple:
        """The whole catalogue coded on first use (a row per item, vocabularies), then kept."""
        if self._coded is None:
            ids = list(dict.fromkeys(chain(self.categories, self.creators, self.published_at)))
            cats = list(map(self.categories.get, ids, repeat(())))
            creators = list(map(self.creators.get, ids))
            pub = np.array(list(map(self.published_at.get, ids)), np.float64)  # None -> NaN
            whole = ItemMeta.from_lists(pub, cats, creators)
            pad = len(ids)  # the row of an unknown item: no categories, no creator, NaN
            self._coded = (
                {i: k for k, i in enumerate(ids)},
                pad,
                np.append(whole.published_at, np.nan),
                np.vstack([whole.category_codes, np.full((1, whole.category_codes.shape[1]), -1, np.intp)]),
                np.append(whole.creator_codes, -1),
                whole.category_vocab,
                whole.creator_vocab,
            )
        return self._coded

    def meta_rows(self) -> dict[str, dict[str, float]]:
        """The ``meta`` hashes of every item (for ``OnlineStore.set_many``)."""
        rows = {}
        for item, cats in self.categories.items():
            row = {f"cat|{c}": 1.0 for c in cats}
            if self.creators.get(item):
                row[f"creator|{self.creators[item]}"] = 1.0
            if self.published_at.get(item) is not None:
                row["published_at"] = float(self.published_at[item])  # type: ignore[arg-type]
            rows[feature_key("item", item, "meta")] = row
        return rows
