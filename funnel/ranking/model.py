"""``RankingPipeline``: retrieval sources + a multi-objective ranker, trained leak-free.

``fit(data)`` (a :class:`~funnel.retrieval.source.RetrievalData` of every training event):

1. cut the events by time into history and a label window (:mod:`funnel.ranking.labels`);
2. fit the :class:`~funnel.retrieval.retriever.Retriever` on the history only;
3. ask it, as of the cut, for the candidates of the label-window users (a hash sample of at most
   ``max_label_users``); label them from the window; sample negatives (:mod:`funnel.ranking.dataset`);
4. read their features point in time at the cut from the offline store (DuckDB over a Parquet
   lake of the history events) and build the matrix with ``build_features``;
5. train :class:`~funnel.ranking.ranker.MultiObjectiveRanker` on the users outside the validation
   share, early-stopped on it; record ``report_`` (per-head AUC and NDCG@10 on validation, the
   lift over retrieval order, feature importance);
6. refit the sources on *all* events for serving, and the catalogue statistics with them.

``fit(data, impressions=table)`` (an ``IMPRESSIONS`` table) corrects for position bias
(:mod:`funnel.ranking.position_bias`, ``position_bias`` settings): a click model estimates each
slot's examination propensity ``θ_p``; items shown to a label user in their window and not engaged
become negatives; engaged rows clicked at position ``p`` weigh ``min(1 / θ_p, max_weight)`` in
every head. Impressions later than a user's last event are ignored (no feedback could follow).
Without impressions the rows are exactly those of step 3.

``rank(query, server)`` serves: merged candidates, features read from an online store through a
:class:`~funnel.features.serving.FeatureServer`, one batched scoring call, best first.

Example:
    >>> from funnel.data.synthetic import SyntheticConfig, generate
    >>> from funnel.retrieval.sources.common import retrieval_data
    >>> ds = generate(SyntheticConfig(n_users=120, n_items=80, n_interactions=3000, seed=1))
    >>> data = retrieval_data(ds.interactions, ds.items, ds.users)
    >>> p = RankingPipeline({"item_knn": {}, "trending": {}}, total=100,
    ...                     ranker={"n_estimators": 10}).fit(data)
    >>> sorted(p.report_["heads"]) == sorted(p.ranker_.boosters_)
    True
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa

from funnel.core.artifacts import load_artifact, save_artifact
from funnel.core.estimator import Estimator
from funnel.core.interactions import Interactions
from funnel.core.steps import step
from funnel.features.offline import OfflineStore, write_partitioned
from funnel.features.serving import FeatureServer
from funnel.ranking.dataset import (
    TrainingRows,
    append_items,
    candidate_rows,
    feature_rows,
    offline_vectors,
    row_weights,
    subset,
    user_hash,
    window_impressions,
)  # fmt: skip
from funnel.ranking.features import Context, ItemStatics
from funnel.ranking.labels import LabelConfig, available_heads, head_labels, label_mask
from funnel.ranking.position_bias import BiasConfig, ImpressionSlots, PositionBiasModel, estimate_bias
from funnel.ranking.ranker import MultiObjectiveRanker
from funnel.ranking.report import ranking_report
from funnel.ranking.trace import RequestTrace
from funnel.retrieval.merge import MergedCandidates
from funnel.retrieval.quotas import history_query
from funnel.retrieval.retriever import DEFAULT_SOURCES, Retriever
from funnel.retrieval.source import RetrievalData, RetrievalQuery

log = logging.getLogger(__name__)
KIND, FORMAT_VERSION = "ranking_pipeline", 1
EASE_MAX_ITEMS = 20_000
"""Catalogues with at most this many interacted items add the ``ease`` source by default."""


def item_statics(data: RetrievalData) -> ItemStatics:
    """Catalogue statistics of ``data``: popularity (positive users per item) and publish times."""
    pop = np.asarray((data.X > 0).sum(axis=0)).ravel().astype(np.float64)
    pub = data.items.column("published_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    pub = np.asarray(pub, dtype=np.float64)  # nulls become NaN
    return ItemStatics(data.items.column("item_id").to_pylist(), pop, pub)


def offline_store(data: RetrievalData, folder: str | Path) -> OfflineStore:
    """An offline store over ``data``'s events, written as a features lake under ``folder``."""
    write_partitioned(folder, "interactions", data.interactions.to_table(), "train")
    return OfflineStore(folder, data.items)


class RankingPipeline(Estimator):
    """Sources + ranker; see the module docstring.

    Args:
        sources, quotas, total: the :class:`Retriever`'s (``total`` candidates per user); sources
            default to the Retriever's defaults plus ``ease`` (up to :data:`EASE_MAX_ITEMS` items).
        labels: :class:`LabelConfig` fields (label window, like / dislike / completion thresholds).
        ranker: :class:`MultiObjectiveRanker` hyper-parameters.
        max_label_users: label-window users sampled for training rows.
        negatives: non-engaged candidates sampled per user.
        valid_fraction: share of label users held out for early stopping and the report. 0.1:
            on synthetic usertemporal (``benchmarks.pipeline_quality``) 0.2 gave NDCG@10 0.1404 and
            0.1 gave 0.1453 — the heads gain more from the extra training users than early
            stopping loses.
        seed: sampling seed.
        position_bias: :class:`~funnel.ranking.position_bias.BiasConfig` fields (used when ``fit``
            gets impressions).

    Attributes:
        retriever_, ranker_, statics_: fitted for serving; cut_ms_: the training cut;
        report_: heads, skipped heads, validation metrics, lift, importance, row counts (and the
        position-bias estimate when impressions were given); position_theta_: its ``θ`` or ``None``.
    """

    def __init__(
        self,
        sources: Mapping[str, Mapping[str, Any]] | None = None,
        quotas: Mapping[str, float] | str | None = None,
        total: int = 1000,
        labels: Mapping[str, Any] | None = None,
        ranker: Mapping[str, Any] | None = None,
        max_label_users: int = 3000,
        negatives: int = 100,
        valid_fraction: float = 0.1,
        seed: int = 0,
        position_bias: Mapping[str, Any] | None = None,
    ) -> None:
        self.sources = None if sources is None else {k: dict(v) for k, v in sources.items()}
        self.quotas = quotas if quotas is None or isinstance(quotas, str) else dict(quotas)
        self.total = total
        self.labels = dict(labels or {})
        self.ranker = dict(ranker or {})
        self.max_label_users = max_label_users
        self.negatives = negatives
        self.valid_fraction = valid_fraction
        self.seed = seed
        self.position_bias = dict(position_bias or {})

    def _retriever(self, data: RetrievalData) -> Retriever:
        sources = self.sources
        if sources is None:  # the Retriever's defaults, plus EASE where the catalogue allows it
            active = int((np.diff(data.X.tocsc().indptr) > 0).sum())
            sources = {**DEFAULT_SOURCES, **({"ease": {}} if active <= EASE_MAX_ITEMS else {})}
        return Retriever(sources, self.quotas, total=self.total)

    def fit(
        self, data: RetrievalData, workdir: str | Path | None = None, impressions: pa.Table | None = None
    ) -> Self:
        """Train leak-free on ``data`` (steps in the module docstring); ``workdir`` holds the lake.

        ``impressions``: the served pages (``IMPRESSIONS`` schema) behind ``data``'s events, if logged.
        """
        with step("training rows"), tempfile.TemporaryDirectory(dir=workdir) as tmp:
            rows, cut = self.training_rows(data, tmp, impressions)
        self.cut_ms_ = cut
        valid = np.array([user_hash(u, f"valid{self.seed}") < self.valid_fraction for u in rows.user_ids])
        train, held = rows.take_groups(~valid), rows.take_groups(valid)
        vset = (held.X, held.group_sizes, held.labels) if len(held.group_sizes) else None
        with step("ranker fit"):
            self.ranker_ = MultiObjectiveRanker(**self.ranker).fit(
                train.X, train.group_sizes, train.labels, rows.names, sample_weight=train.weights, valid=vset
            )
        self.report_ = ranking_report(self.ranker_, held if len(held.group_sizes) else train)
        self.report_["rows"] = {"train": len(train.X), "valid": len(held.X), **rows.stats}
        self.report_["position_bias"] = self.bias_report_
        with step("serving sources"):
            self.retriever_ = self._retriever(data).fit(data)
        self.statics_ = item_statics(data)
        self.n_items_ = data.X.shape[1]
        return self

    def _slots(
        self, inter: Interactions, impressions: pa.Table | None, cfg: LabelConfig
    ) -> ImpressionSlots | None:
        """Impression slots up to each user's last event, with ``bias_`` fitted on them (or ``None``)."""
        self.bias_: PositionBiasModel | None = None
        self.position_theta_, self.bias_report_ = None, {"used": False, "why": "no impressions"}
        if impressions is None or impressions.num_rows == 0:
            return None
        if cfg.split == "random":
            self.bias_report_["why"] = "split='random' has no label window in time"
            return None
        slots, self.bias_, self.bias_report_ = estimate_bias(
            inter, impressions, BiasConfig(**self.position_bias)
        )
        self.position_theta_ = None if self.bias_ is None else self.bias_.theta_
        return slots

    def training_rows(
        self, data: RetrievalData, folder: str | Path, impressions: pa.Table | None = None
    ) -> tuple[TrainingRows, int]:
        """The labelled feature rows of the label-window users, and the last history time (steps 1–4).

        With ``labels["draws"] = n`` (``split="random"`` only) the rows of ``n`` independent random
        splits (seeds ``seed``, ``seed + 1``, …; sources refitted on each history) are stacked, one
        group per user and draw.
        """
        cfg = LabelConfig(**self.labels)
        slots = self._slots(data.interactions, impressions, cfg)
        if cfg.draws == 1:
            return self._draw_rows(data, folder, slots, cfg)
        parts = [self._draw_rows(data, Path(folder) / f"draw{d}", slots, replace(cfg, seed=cfg.seed + d))
                 for d in range(cfg.draws)]  # fmt: skip
        return TrainingRows.concat([rows for rows, _ in parts]), max(now for _, now in parts)

    def _draw_rows(
        self, data: RetrievalData, folder: str | Path, slots: ImpressionSlots | None, cfg: LabelConfig
    ) -> tuple[TrainingRows, int]:
        """The rows of one label split (see :meth:`training_rows`)."""
        inter = data.interactions
        is_label, cuts = label_mask(inter, cfg)
        history = inter.subset(~is_label)
        window = inter.subset(is_label)
        now = int(history.timestamp.max(initial=0)) + 1
        hist = RetrievalData(history, history.to_csr(), data.items, data.users, now)
        heads, missing = available_heads(inter, cfg)
        for why in missing.values():
            log.info("ranker head skipped: %s", why)
        positives = head_labels(window, cfg, heads)
        users = np.unique(window.user_idx[window.positive_mask()]).astype(np.int64)
        ids = inter.users.keys_of(users)
        share = self.max_label_users / max(1, len(users))
        pick = np.array([user_hash(u, f"sample{self.seed}") < share for u in ids], dtype=bool)
        users, ids = users[pick], [u for u, k in zip(ids, pick.tolist(), strict=True) if k]
        with step("history sources"):
            retriever = self._retriever(hist).fit(hist)
        with step("candidates"):
            query = history_query(hist, users)
            merged = retriever.retrieve(query)
        shown, clicks, bc = None, None, BiasConfig(**self.position_bias)
        if slots is not None:
            seen = np.unique(history.user_idx.astype(np.int64) * inter.n_items + history.item_idx)
            shown, *clicks = window_impressions(slots, users, cuts, inter.n_items, positives["engage"], seen)
            if bc.negatives == "all":
                merged = [append_items(m, s) for m, s in zip(merged, shown, strict=True)]
            shown = None if bc.negatives == "none" else shown
        keep, labels, stats = candidate_rows(
            merged, users, ids, inter.n_items, positives, self.negatives, self.seed, shown
        )
        stats["label_users"] = len(users)
        used = [k for k, r in enumerate(keep) if len(r)]
        merged = [subset(merged[k], keep[k]) for k in used]
        with step("features"):
            statics = item_statics(hist)
            offline = offline_store(hist, folder)
            times = np.minimum(cuts[users[used]], now) if used else np.zeros(0, dtype=np.int64)
            item_ids = [statics.ids_of(m.items) for m in merged]
            vectors = offline_vectors(offline, [ids[k] for k in used], item_ids, times)
            fm = feature_rows(vectors, merged, statics)
        rows = TrainingRows(
            fm.values,
            fm.names,
            np.array([len(keep[k]) for k in used], dtype=np.int64),
            {h: np.concatenate([labels[h][k] for k in used]) for h in heads},
            [ids[k] for k in used],
            np.concatenate([m.items for m in merged]),
            stats,
        )
        rows.stats["heads_missing"] = len(missing)
        if slots is not None:
            rows.stats["impression_only_rows"] = int(sum((m.source < 0).sum() for m in merged))
        if clicks and self.bias_ is not None and bc.weights:
            row_keys = np.repeat(users[used].astype(np.int64), rows.group_sizes) * inter.n_items + rows.items
            rows.weights = row_weights(row_keys, rows.labels["engage"], *clicks, self.bias_, bc.max_weight)
            rows.stats["weighted_rows"] = int((rows.weights != 1.0).sum())
        return rows, now

    def retrieve(self, query: RetrievalQuery, trace: RequestTrace | None = None) -> list[MergedCandidates]:
        """The serving retriever's merged candidates for ``query`` (sources recorded in ``trace``)."""
        if trace is None:
            return self.retriever_.retrieve(query)
        merged = self.retriever_.retrieve(query, inspect=trace.record_sources)
        trace.merged = len(merged[0]) if merged else 0
        trace.lap("retrieval")
        return merged

    def rank(
        self,
        query: RetrievalQuery,
        server: FeatureServer,
        contexts: Sequence[Context] | None = None,
        weights: Mapping[str, float] | None = None,
        trace: RequestTrace | None = None,
        request_ids: Sequence[str | None] | None = None,
    ) -> list[tuple[MergedCandidates, np.ndarray]]:
        """Per user of ``query``: merged candidates re-ordered best first, and their scores.

        ``trace`` records the sources, stage times and the first user's features and head scores.
        ``request_ids`` (one per user, or None) go with each feature read: the server's
        served-feature log keeps a sample of the vectors scored, by request id.
        """
        merged = self.retrieve(query, trace)
        ids = [self.statics_.ids_of(m.items) for m in merged]
        rids = request_ids if request_ids is not None else [None] * len(ids)
        bound = server.bound_items is not None and server.bound_items is self.statics_.item_ids
        vectors = [  # by item index when the server numbered our catalogue (no id hashing)
            server.read(u, i, query.now_ms, request_id=r, item_index=m.items if bound else None)
            for u, i, r, m in zip(query.user_ids, ids, rids, merged, strict=True)
        ]
        out: list[tuple[MergedCandidates, np.ndarray]] = []
        nonempty = [k for k, m in enumerate(merged) if len(m)]
        scores, fm = np.zeros(0), None
        heads: dict[str, np.ndarray] = {}
        if nonempty:
            fm = feature_rows([vectors[k] for k in nonempty], [merged[k] for k in nonempty], self.statics_,
                              [contexts[k] for k in nonempty] if contexts else None)  # fmt: skip
            if trace is None:
                scores = self.ranker_.score(fm.values, weights=weights)
            else:  # the same sum, keeping the heads
                trace.lap("features")
                heads = self.ranker_.predict_heads(fm.values)
                scores = self.ranker_.combine(heads, len(fm.values), weights)
                trace.lap("ranking")
        at = 0
        for m in merged:
            s = scores[at : at + len(m)]
            at += len(m)
            order = np.argsort(-s, kind="stable")
            out.append((subset(m, order), s[order]))
        if trace is not None and out:  # the first user's rows come first
            first = np.argsort(-scores[: len(out[0][0])], kind="stable")
            w = self.ranker_.weights if weights is None else weights
            trace.record_ranker(*out[0], first, heads, fm if len(first) else None, w)
        return out

    def save(self, folder: str | Path) -> None:
        """Write the retriever, the ranker and the catalogue statistics under ``folder``."""
        folder = Path(folder)
        self.retriever_.save(folder / "retriever")
        self.ranker_.save(folder / "ranker")
        arrays = {"popularity": self.statics_.popularity, "published_at": self.statics_.published_at}
        if self.position_theta_ is not None:
            arrays["position_theta"] = self.position_theta_
        meta = {"cut_ms": self.cut_ms_, "report": self.report_, "n_items": self.n_items_,
                "item_ids": self.statics_.item_ids}  # fmt: skip
        save_artifact(folder, KIND, FORMAT_VERSION, self.get_params(), arrays, meta)

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a pipeline written by :meth:`save` (no pickle)."""
        folder = Path(folder)
        art = load_artifact(folder, KIND, FORMAT_VERSION)
        p = cls(**art.params)
        p.retriever_ = Retriever.load(folder / "retriever")
        p.ranker_ = MultiObjectiveRanker.load(folder / "ranker")
        p.statics_ = ItemStatics(art.meta["item_ids"], art.arrays["popularity"], art.arrays["published_at"])
        p.cut_ms_, p.report_, p.n_items_ = art.meta["cut_ms"], art.meta["report"], art.meta["n_items"]
        p.position_theta_ = art.arrays.get("position_theta")
        return p
