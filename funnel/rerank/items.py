"""``ItemPolicyTable``: the item side of re-ranking as columnar NumPy arrays, built once per catalogue.

Row ``j`` describes item index ``j`` (the catalogue table must be aligned to the item index, e.g.
with :func:`funnel.retrieval.sources.common.aligned_table`). Per request, re-ranking only gathers
rows of these arrays for its candidates. The columns come from the canonical ``ITEMS`` schema:

* ``listed``: ``status`` is ``"listed"`` or null (anything else, e.g. ``"unlisted"``, is hidden);
* ``min_age``: years from ``attributes.age_rating`` — ``"all"`` or missing → 0, ``"<N>+"`` → N,
  any other rating → :data:`UNKNOWN_RATING_AGE` (18: an unknown rating is treated as adult);
* ``region_set`` / ``region_allowed``: ``attributes.regions`` (missing or empty = everywhere) as a
  code per item into the distinct region lists, and a ``bool [n_sets, n_countries + 1]`` matrix
  whose last column is "a country no item lists" (only unrestricted sets allow it);
* ``sponsored``: ``attributes.sponsored`` is true;
* ``categories``: ``int32 [n, width]`` category codes, ``-1`` padded (``primary`` = first column);
* ``creator``: ``int32`` creator code, ``-1`` when null; ``published_ms``: ``int64``, ``INT64_MIN``
  when null; ``titles`` / ``creator_names`` / ``category_names`` / ``countries``: the vocabularies;
* ``impressions`` / ``clicks``: exposure counts for exploration's Beta posteriors (zeros until
  :meth:`ItemPolicyTable.with_feedback`); ``embeddings``: optional unit-norm ``float32 [n, d]``.

The attributes JSON is parsed once per distinct string (catalogues repeat a few combinations).

Example:
    >>> import pyarrow as pa
    >>> items = pa.table({"item_id": ["a", "b"], "status": ["listed", "unlisted"],
    ...                   "categories": [["news"], ["sports", "news"]], "creator_id": ["c1", None],
    ...                   "attributes": ['{"age_rating": "18+", "regions": ["US"]}', '{"sponsored": true}']})
    >>> t = ItemPolicyTable.from_catalogue(items)
    >>> t.listed.tolist(), t.min_age.tolist(), t.sponsored.tolist(), t.creator.tolist()
    ([True, False], [18, 0], [False, True], [0, -1])
    >>> t.categories.tolist(), t.region_ok(np.array([0, 1]), "FR").tolist()
    ([[0, -1], [1, 0]], [False, True])
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.errors import ValidationError
from funnel.retrieval.sources.new_items import published_ms

UNKNOWN_RATING_AGE = 18
"""Minimum age of an item whose ``age_rating`` is neither ``"all"`` nor ``"<N>+"``."""
_RATING = re.compile(r"^\s*(\d+)\s*\+\s*$")


def rating_age(rating: Any) -> int:
    """Minimum viewer age of an ``age_rating`` value (``"all"``/None → 0, ``"13+"`` → 13, else 18)."""
    if rating is None or (isinstance(rating, str) and rating.strip().lower() in ("", "all")):
        return 0
    match = _RATING.match(str(rating))
    return int(match.group(1)) if match else UNKNOWN_RATING_AGE


@dataclass(frozen=True)
class ItemPolicyTable:
    """Per-item columns re-ranking needs (see the module docstring); build with :meth:`from_catalogue`."""

    item_ids: pa.Array
    listed: np.ndarray
    min_age: np.ndarray
    sponsored: np.ndarray
    region_set: np.ndarray
    region_allowed: np.ndarray
    countries: tuple[str, ...]
    categories: np.ndarray
    category_names: tuple[str, ...]
    creator: np.ndarray
    creator_names: tuple[str, ...]
    published_ms: np.ndarray
    titles: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.listed)

    @property
    def primary(self) -> np.ndarray:
        """``int32 [n]`` first category code of each item (``-1`` without categories)."""
        return self.categories[:, 0]

    @classmethod
    def from_catalogue(
        cls,
        items: pa.Table,
        embeddings: np.ndarray | None = None,
        impressions: np.ndarray | None = None,
        clicks: np.ndarray | None = None,
    ) -> ItemPolicyTable:
        """Build from a catalogue table with ``ITEMS`` columns (missing columns take their defaults)."""
        n = items.num_rows
        cols = set(items.column_names)

        def col(name: str) -> pa.Array:
            return items.column(name).combine_chunks() if name in cols else pa.nulls(n, pa.string())

        ids = col("item_id").cast(pa.string())
        status = col("status")
        listed = np.asarray(pc.fill_null(pc.equal(status, "listed"), True).to_numpy(zero_copy_only=False))
        min_age, sponsored, region_set, region_allowed, countries = _attributes(col("attributes"))
        cats, cat_names = _categories(items.column("categories") if "categories" in cols else None, n)
        creator, creator_names = _codes(col("creator_id"))
        published = published_ms(items) if "published_at" in cols else np.full(n, np.iinfo(np.int64).min)
        titles = np.asarray(col("title").to_pylist(), dtype=object)
        table = cls(
            ids, listed.astype(bool), min_age, sponsored, region_set, region_allowed, countries,
            cats, cat_names, creator, creator_names, np.asarray(published, np.int64), titles,
            np.zeros(n), np.zeros(n),
        )  # fmt: skip
        if embeddings is not None:
            table = table.with_embeddings(embeddings)
        if impressions is not None or clicks is not None:
            table = table.with_feedback(
                np.zeros(n) if impressions is None else impressions, np.zeros(n) if clicks is None else clicks
            )
        return table

    def with_feedback(self, impressions: np.ndarray, clicks: np.ndarray) -> ItemPolicyTable:
        """A copy with exposure counts (``clicks <= impressions``, one per item) for exploration."""
        imp = np.asarray(impressions, np.float64)
        clk = np.asarray(clicks, np.float64)
        if imp.shape != (len(self),) or clk.shape != (len(self),):
            raise ValidationError(f"need one count per item ({len(self)})", field="impressions")
        if (imp < 0).any() or (clk < 0).any():
            raise ValidationError("counts must be >= 0", field="impressions")
        return replace(self, impressions=imp, clicks=np.minimum(clk, imp))

    def with_embeddings(self, embeddings: np.ndarray) -> ItemPolicyTable:
        """A copy with item embeddings (rows normalised to unit length; zero rows stay zero)."""
        e = np.asarray(embeddings, np.float32)
        if e.ndim != 2 or len(e) != len(self):
            raise ValidationError(f"need a [{len(self)}, d] matrix, got {e.shape}", field="embeddings")
        norms = np.linalg.norm(e, axis=1, keepdims=True)
        return replace(self, embeddings=e / np.where(norms > 0, norms, 1.0))

    def index_of(self, item_ids: Any) -> np.ndarray:
        """Item indices of external ids (``-1`` for unknown ones), e.g. for a request's ``exclude``."""
        values = pa.array(list(item_ids), pa.string()) if not isinstance(item_ids, pa.Array) else item_ids
        return np.asarray(pc.fill_null(pc.index_in(values, value_set=self.item_ids), -1), np.int64)

    def category_codes(self, names: Any) -> np.ndarray:
        """Codes of category names (unknown names are dropped)."""
        lookup = {name: i for i, name in enumerate(self.category_names)}
        return np.array([lookup[x] for x in names if x in lookup], dtype=np.int32)

    def creator_codes(self, creator_ids: Any) -> np.ndarray:
        """Codes of creator ids (unknown ids are dropped), e.g. for "not interested" creators."""
        lookup = {name: i for i, name in enumerate(self.creator_names)}
        return np.array([lookup[x] for x in creator_ids if x in lookup], dtype=np.int32)

    def region_ok(self, items: np.ndarray, country: str | None) -> np.ndarray:
        """``bool`` per item: licensed in ``country`` (unknown or missing country: unrestricted only)."""
        try:
            c = self.countries.index(country) if country else len(self.countries)
        except ValueError:
            c = len(self.countries)
        return self.region_allowed[self.region_set[items], c]


def _codes(values: pa.Array) -> tuple[np.ndarray, tuple[str, ...]]:
    """Dictionary codes (``-1`` for null) and the distinct values in first-seen order."""
    enc = values.cast(pa.string()).dictionary_encode()
    codes = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), np.int32)
    return codes, tuple(enc.dictionary.to_pylist())


def _categories(column: pa.ChunkedArray | None, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    if column is None:
        return np.full((n, 1), -1, np.int32), ()
    lists = column.combine_chunks()
    lengths = np.asarray(pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False))
    codes, names = _codes(pc.list_flatten(lists))
    width = max(1, int(lengths.max()) if n else 1)
    out = np.full((n, width), -1, np.int32)
    owner = np.repeat(np.arange(n), lengths)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[owner, slot] = codes
    return out, names


def _attributes(
    column: pa.Array,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Age, sponsored flag and region-set code per item, parsing each distinct JSON string once."""
    codes, texts = _codes(column)
    parsed = [_parse(text) for text in texts] + [{}]  # the last entry serves null attributes
    codes = np.where(codes < 0, len(texts), codes)
    age = np.array([rating_age(a.get("age_rating")) for a in parsed], np.int16)
    sponsored = np.array([a.get("sponsored") is True for a in parsed], bool)
    region_lists = [tuple(sorted({str(r) for r in (a.get("regions") or ())})) for a in parsed]
    countries = tuple(sorted({c for regions in region_lists for c in regions}))
    distinct = sorted(set(region_lists))
    set_code = {regions: i for i, regions in enumerate(distinct)}
    allowed = np.zeros((len(distinct), len(countries) + 1), bool)
    where = {c: i for i, c in enumerate(countries)}
    for i, regions in enumerate(distinct):
        allowed[i, [where[c] for c in regions]] = True
        if not regions:
            allowed[i, :] = True
    per_text = np.array([set_code[r] for r in region_lists], np.int32)
    return age[codes], sponsored[codes], per_text[codes], allowed, countries


def _parse(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON: {exc}", field="attributes") from None
    if not isinstance(value, dict):
        raise ValidationError("must be a JSON object", field="attributes")
    return value
