"""``content``: "similar to what you like" — nearest items in a text-embedding space.

Items are embedded from their metadata alone (title, description, tags, categories; see
:mod:`funnel.retrieval.text_embed`), so items nobody has interacted with are retrievable, and
:meth:`ContentSource.add_items` embeds new catalogue items without refitting. A user's profile is
the recency-weighted mean of their recent items' embeddings (weight ``0.5 ** (age / half_life)``,
age in events, or in time when the query carries event times); onboarding picks (item indices
and category names) count as events older than every recent one, so they alone seed the profile
of a brand-new user. The profile is searched in an :class:`~funnel.ann.protocol.AnnIndex`
(exact by default); each candidate's anchor is the recent item most similar to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from funnel.ann.factory import make_index
from funnel.ann.protocol import AnnIndex
from funnel.core.arrays import object_full
from funnel.core.artifacts import load_artifact, save_artifact
from funnel.core.errors import NotTrainedError
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import listed_mask
from funnel.retrieval.text_embed import item_texts, load_embedder, make_embedder

REASON = "similar_to_what_you_like"
"""The reason code of every content candidate."""
KIND, FORMAT_VERSION = "content_source", 1


def make_ann(kind: str, dim: int, params: dict[str, Any] | None = None) -> AnnIndex:
    """An empty index of ``kind`` (see :func:`funnel.ann.factory.make_index`)."""
    return make_index(kind, dim, **(params or {}))


class ContentSource:
    """Content-based retrieval over text embeddings of the catalogue.

    Args:
        embedder: ``"auto"`` (local MiniLM when installed, else TF-IDF + SVD), ``"tfidf"``, ``"minilm"``.
        dim: TF-IDF + SVD dimension.
        half_life_events: recency half-life in events (newest recent item has age 0).
        half_life_ms: when set and the query carries ``recent_ms``, the half-life in time instead.
        (A user with no ``recent`` items falls back to their ``histories`` row, equally weighted.)
        max_recent: recent items used per user.
        index: ANN kind for ``funnel.ann.factory.make_index``; ``index_params`` its parameters.

    Example:
        >>> import scipy.sparse as sp
        >>> from funnel.data.synthetic import SyntheticConfig, generate
        >>> ds = generate(SyntheticConfig(n_users=20, n_items=40, n_interactions=300, seed=1))
        >>> src = ContentSource(embedder="tfidf", dim=16).fit_items(ds.items)
        >>> q = RetrievalQuery(["new"], sp.csr_matrix((1, 40)), [np.array([3])], [{}], 0)
        >>> c = src.retrieve(q, 5)[0]
        >>> len(c), 3 in c.items.tolist(), c.anchor.tolist() == [3] * 5, c.reason[0]
        (5, False, True, 'similar_to_what_you_like')
    """

    name = "content"

    def __init__(
        self,
        embedder: str = "auto",
        dim: int = 64,
        half_life_events: float = 5.0,
        half_life_ms: float | None = None,
        max_recent: int = 50,
        index: str = "exact",
        index_params: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        self.embedder, self.dim, self.seed = embedder, dim, seed
        self.half_life_events, self.half_life_ms, self.max_recent = half_life_events, half_life_ms, max_recent
        self.index, self.index_params = index, index_params or {}
        self.embedder_: Any = None
        self.item_emb_: np.ndarray | None = None
        self.categories_: dict[str, int] = {}
        self.category_emb_: np.ndarray | None = None
        self.index_: AnnIndex | None = None
        self.listed_ = np.zeros(0, bool)

    def fit(self, data: RetrievalData) -> Self:
        """Fit the embedder on the catalogue text and index every listed item that has text."""
        return self.fit_items(data.items, max(data.items.num_rows, data.X.shape[1]))

    def fit_items(self, items: pa.Table, n_items: int | None = None) -> Self:
        """Fit from a catalogue table alone (row ``j`` = item index ``j``)."""
        texts = item_texts(items)
        self.embedder_ = make_embedder(self.embedder, self.dim, self.seed).fit([t for t in texts if t])
        n = max(n_items or 0, len(texts))
        self.item_emb_ = np.zeros((n, self.embedder_.out_dim), np.float32)
        self.category_emb_ = np.zeros((0, self.embedder_.out_dim), np.float32)
        self.categories_ = {}
        self.listed_ = np.ones(n, bool)
        self.index_ = make_ann(self.index, self.embedder_.out_dim, self.index_params)
        self.add_items(items, np.arange(items.num_rows))
        return self

    def add_items(self, items: pa.Table, indices: np.ndarray) -> None:
        """Embed catalogue rows ``items`` as item ``indices`` (new or updated) without refitting.

        Unlisted rows are embedded (a history may hold them) but not searchable.
        """
        if self.item_emb_ is None or self.index_ is None or self.category_emb_ is None:
            raise NotTrainedError("ContentSource: call fit first")
        indices = np.asarray(indices, np.int64)
        texts = item_texts(items)
        vecs = self.embedder_.transform(texts)
        if len(indices) and indices.max() >= len(self.item_emb_):
            grow = int(indices.max()) + 1 - len(self.item_emb_)
            self.item_emb_ = np.vstack(
                [self.item_emb_, np.zeros((grow, self.item_emb_.shape[1]), np.float32)]
            )
            self.listed_ = np.concatenate([self.listed_, np.ones(grow, bool)])
        self.item_emb_[indices] = vecs
        self.listed_[indices] = listed_mask(items)
        has = (np.linalg.norm(vecs, axis=1) > 0) & self.listed_[indices]
        if has.any():
            self.index_.add(indices[has], vecs[has])
        if (~self.listed_[indices]).any():
            self.index_.remove(indices[~self.listed_[indices]])
        cats = items.column("categories").to_pylist() if "categories" in items.column_names else []
        sums = np.zeros((0, vecs.shape[1]), np.float32)
        for row, names in enumerate(cats):
            for c in names or ():
                j = self.categories_.setdefault(c, len(self.categories_))
                if j >= len(sums):
                    sums = np.vstack([sums, np.zeros((j + 1 - len(sums), vecs.shape[1]), np.float32)])
                sums[j] += vecs[row]
        old = np.zeros((len(self.categories_), vecs.shape[1]), np.float32)
        old[: len(self.category_emb_)] = self.category_emb_
        old[: len(sums)] += sums  # running sums: only the direction matters
        self.category_emb_ = old

    def profiles(self, query: RetrievalQuery) -> np.ndarray:
        """One L2-normalised profile per user (zero when there is nothing to go on)."""
        if self.item_emb_ is None or self.category_emb_ is None:
            raise NotTrainedError("ContentSource: call fit first")
        out = np.zeros((len(query), self.item_emb_.shape[1]), np.float32)
        hist = query.histories.tocsr()
        for u in range(len(query)):
            recent, age = self._recent(query, u, hist)
            w = 0.5 ** np.maximum(age, 0.0)
            vec = w @ self.item_emb_[recent] if len(recent) else np.zeros(out.shape[1])
            seed = np.zeros(out.shape[1])
            if u < len(query.interests):
                picks = self._known(query.interests[u])
                seed = seed + self.item_emb_[picks].sum(axis=0)
            if u < len(query.interest_categories):
                cats = [self.categories_[c] for c in query.interest_categories[u] if c in self.categories_]
                seed = seed + (_unit(self.category_emb_[cats]).sum(axis=0) if cats else 0.0)
            last_age = age[-1] + 1.0 / self.half_life_events if len(recent) else 0.0
            vec = vec + 0.5 ** max(last_age, 0.0) * _unit(seed[None])[0]
            out[u] = _unit(vec[None])[0]
        return out

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidates]:
        """Top-``k`` items nearest each user's profile; seen, recent and onboarding items excluded."""
        if self.index_ is None or self.item_emb_ is None:
            raise NotTrainedError("ContentSource: call fit first")
        prof = self.profiles(query)
        active = np.flatnonzero(np.linalg.norm(prof, axis=1) > 0)
        out = [Candidates.empty() for _ in range(len(query))]
        if not len(active) or k <= 0:
            return out
        hist = query.histories.tocsr()
        picks = [query.interests[u] if u < len(query.interests) else [] for u in active]
        exclude = [
            np.union1d(np.union1d(hist.indices[hist.indptr[u] : hist.indptr[u + 1]], query.recent[u]), p)
            for u, p in zip(active, picks, strict=True)
        ]
        ids, scores = self.index_.search(prof[active], k, [e.astype(np.int64) for e in exclude])
        for r, u in enumerate(active):
            keep = ids[r] >= 0
            items, sc = ids[r][keep].astype(np.int32), scores[r][keep].astype(np.float32)
            recent = self._recent(query, u, hist)[0]
            anchor = np.full(len(items), -1, np.int32)
            if len(recent) and len(items):
                anchor = recent[(self.item_emb_[items] @ self.item_emb_[recent].T).argmax(axis=1)].astype(
                    np.int32
                )
            out[u] = Candidates(items, sc, object_full(len(items), REASON), anchor)
        return out

    def _recent(self, query: RetrievalQuery, u: int, hist: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """User ``u``'s recent items (known ones, at most ``max_recent``) and their ages in half-lives."""
        recent, times = np.asarray(query.recent[u], np.int64), query.recent_ms
        age = np.arange(len(recent), dtype=np.float64) / self.half_life_events
        if self.half_life_ms and u < len(times) and len(times[u]) == len(recent):
            age = (query.now_ms - np.asarray(times[u], np.float64)) / self.half_life_ms
        if not len(recent):  # no recency information: the history, equally weighted
            recent = hist.indices[hist.indptr[u] : hist.indptr[u + 1]].astype(np.int64)
            age = np.zeros(len(recent))
        ok = (recent >= 0) & (recent < len(self.item_emb_))
        return recent[ok][: self.max_recent], age[ok][: self.max_recent]

    def _known(self, items: np.ndarray) -> np.ndarray:
        assert self.item_emb_ is not None
        items = np.asarray(items, np.int64)
        return items[(items >= 0) & (items < len(self.item_emb_))]

    def save(self, folder: str | Path) -> None:
        """Item embeddings, category centroids and the embedder (the index is rebuilt on load)."""
        if self.item_emb_ is None or self.category_emb_ is None:
            raise NotTrainedError("ContentSource: call fit first")
        params = {
            "embedder": self.embedder, "dim": self.dim, "half_life_events": self.half_life_events,
            "half_life_ms": self.half_life_ms, "max_recent": self.max_recent, "index": self.index,
            "index_params": self.index_params, "seed": self.seed,
        }  # fmt: skip
        names = np.array(sorted(self.categories_, key=self.categories_.__getitem__), dtype=np.str_)
        arrays = {"item_emb": self.item_emb_, "category_emb": self.category_emb_, "category_names": names}
        arrays["listed"] = self.listed_
        save_artifact(folder, KIND, FORMAT_VERSION, params, arrays)
        self.embedder_.save(Path(folder) / "embedder")

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a source written by :meth:`save`."""
        art = load_artifact(folder, KIND, FORMAT_VERSION)
        src = cls(**art.params)
        src.embedder_ = load_embedder(Path(folder) / "embedder")
        src.item_emb_, src.category_emb_ = art.arrays["item_emb"], art.arrays["category_emb"]
        src.categories_ = {str(c): j for j, c in enumerate(art.arrays["category_names"].tolist())}
        src.listed_ = np.asarray(art.arrays.get("listed", np.ones(len(src.item_emb_), bool)), bool)
        src.index_ = make_ann(src.index, src.item_emb_.shape[1], src.index_params)
        has = np.flatnonzero((np.linalg.norm(src.item_emb_, axis=1) > 0) & src.listed_)
        src.index_.add(has, src.item_emb_[has])
        return src


def _unit(m: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norm > 0, norm, 1.0)
