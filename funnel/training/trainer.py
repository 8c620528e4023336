"""Training for the walking skeleton: data → model selection → refit on everything → bundle.

``train_bundle`` reads every interaction the engine holds (the Parquet lake plus the event log),
indexes it with the engine's persisted ``IdMap``s, picks the strongest baseline by NDCG@k on a
held-out split of the same data (unless a model is named), refits it on all data and writes a
versioned bundle. The selection table is kept in the bundle's metrics, so a user can see why a
model won.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.errors import NotFoundError, ValidationError
from funnel.core.idmap import IdMap
from funnel.core.interactions import Interactions
from funnel.core.steps import step
from funnel.data.lake import SCHEMAS as LAKE_KINDS
from funnel.data.lake import Lake
from funnel.eval.runner import evaluate_models
from funnel.retrieval.models import MODELS, make_model
from funnel.training.bundle import Bundle
from funnel.training.registry import ModelRegistry

log = logging.getLogger(__name__)

REPORT_KEYS = (
    "heads",
    "skipped",
    "auc",
    "ndcg@10_final",
    "ndcg@10_retrieval",
    "lift",
    "rows",
    "position_bias",
)
"""The ranking pipeline's report entries kept in the training summary."""
SELECTION_ORDER = ("ease", "als", "itemknn", "pop")
"""Candidates tried by ``model="auto"``; EASE is skipped when the catalogue exceeds its limit."""


@dataclass
class TrainSummary:
    """What a training run did: the chosen model, the selection table, sizes and timings."""

    version: str
    model: str
    n_users: int
    n_items: int
    n_interactions: int
    selection: dict[str, dict[str, float]] = field(default_factory=dict)
    protocol: str = ""
    seconds: float = 0.0
    ranking: dict[str, Any] = field(default_factory=dict)
    status: str = "candidate"
    """What the registry made of the version: ``live`` or ``rejected`` (see funnel.training.release)."""
    gate: dict[str, Any] = field(default_factory=dict)
    """The gate's report (:class:`funnel.training.gates.GateReport` as a dict); empty if not gated."""
    parent_version: str | None = None


def load_idmap(path: Path) -> IdMap:
    """The persisted map at ``path``, or a new empty one."""
    return IdMap.load(path) if path.exists() else IdMap()


def _titles_for(items: IdMap, catalogue: pa.Table) -> pa.Array:
    titles = [None] * len(items)
    if catalogue.num_rows:
        idx = items.lookup(catalogue.column("item_id"))
        for i, t in zip(idx.tolist(), catalogue.column("title").to_pylist(), strict=True):
            if i >= 0:
                titles[i] = t
    return pa.array(titles, type=pa.string())


def _listed_for(items: IdMap, catalogue: pa.Table) -> np.ndarray:
    listed = np.ones(len(items), dtype=bool)
    if catalogue.num_rows:
        unlisted = pc.equal(catalogue.column("status").fill_null("listed"), "unlisted")
        ids = pc.filter(catalogue.column("item_id"), unlisted)
        idx = items.lookup(ids)
        listed[idx[idx >= 0]] = False
    return listed


SELECTION_USERS = 5000
"""Test users the baseline selection scores (a sample): each costs a pass over the whole catalogue,
which at a million items made the selection alone take hours for 100k users."""


def _select(inter: Interactions, k: int, candidates: list[str]) -> tuple[str, dict, str]:
    """Evaluate ``candidates`` on a held-out split; return (best name, table, protocol).

    Scores :data:`SELECTION_USERS` of the split's test users at most.
    """
    protocol = "usertemporal"
    cap = SELECTION_USERS
    report = evaluate_models(inter, protocol, k, candidates, 0.8, 42, progress=False, max_test_users=cap)
    results = report.to_json_dict()["results"]
    if report.n_users < 20:
        protocol = "strat"
        report = evaluate_models(inter, protocol, k, candidates, 0.8, 42, progress=False, max_test_users=cap)
        results = report.to_json_dict()["results"]
    best = max(results, key=lambda name: results[name]["ndcg"])
    return best, results, protocol


def train_bundle(
    data_dir: Path,
    lake: Lake,
    registry: ModelRegistry,
    log_table: pa.Table,
    log_offset: int,
    model: str = "auto",
    k: int = 10,
    params: dict[str, Any] | None = None,
    ranking: dict[str, Any] | None = None,
    *,
    events: pa.Table | None = None,
    parent_version: str | None = None,
    folder: Path | None = None,
) -> TrainSummary:
    """Train on the lake plus ``log_table``, write a ``candidate`` bundle; see the module doc.

    ``ranking`` (``RankingPipeline`` arguments; ``None``: no pipeline) also trains the retrieval +
    ranking pipeline into the bundle (``ranking/`` and the data it serves from). Too little data
    for a label window skips it with the reason in the summary; the baseline still serves.
    ``events`` (default: :func:`training_events`) are the interactions to train on;
    ``parent_version`` is recorded in the manifest; ``folder`` (default: a new version of
    ``registry``) is where the bundle goes. Promotion is :mod:`funnel.training.release`'s job.

    Steps (:mod:`funnel.core.steps`, under ``candidate``, or ``scratch fit`` with a ``folder``:
    the gate's refit): ``datasets``, ``baseline selection``, ``baseline fit``, ``ranking`` (its
    ``datasets`` and the :class:`~funnel.ranking.model.RankingPipeline` steps), ``bundle write``.
    """
    with step("candidate" if folder is None else "scratch fit"):
        return _train_bundle(
            data_dir, lake, registry, log_table, log_offset, model, k, params, ranking, events,
            parent_version, folder,
        )  # fmt: skip


def _train_bundle(
    data_dir: Path,
    lake: Lake,
    registry: ModelRegistry,
    log_table: pa.Table,
    log_offset: int,
    model: str,
    k: int,
    params: dict[str, Any] | None,
    ranking: dict[str, Any] | None,
    events: pa.Table | None,
    parent_version: str | None,
    folder: Path | None,
) -> TrainSummary:
    start = time.perf_counter()
    if model != "auto" and model not in MODELS:
        raise ValidationError(f"unknown model {model!r}; known: auto, {', '.join(MODELS)}", field="model")
    with step("datasets"):
        table = training_events(lake, log_table) if events is None else events
        if table.num_rows == 0:
            raise NotFoundError(f"no interactions in {data_dir}: import some first (funnel import)")
        catalogue = lake.read("items")
        users = load_idmap(data_dir / "idmaps" / "users.arrow")
        items = load_idmap(data_dir / "idmaps" / "items.arrow")
        items.add_many(catalogue.column("item_id"))
        inter = Interactions.from_table(table, users, items)
        users.save(data_dir / "idmaps" / "users.arrow")
        items.save(data_dir / "idmaps" / "items.arrow")
        X = inter.to_csr()

    selection: dict[str, dict[str, float]] = {}
    protocol = ""
    name = model
    if model == "auto":
        ease_limit = make_model("ease").max_items
        candidates = [m for m in SELECTION_ORDER if m != "ease" or len(items) <= ease_limit]
        with step("baseline selection"):
            name, selection, protocol = _select(inter, k, candidates)
    with step("baseline fit"):
        fitted = make_model(name, **(params or {})).fit(X)
    version = registry.new_version() if folder is None else folder.name
    folder = registry.root / version if folder is None else folder
    # impressions reach the ranker (position bias) once the lake stores them
    shown = lake.read("impressions") if ranking is not None and "impressions" in LAKE_KINDS else None
    with step("ranking"):
        ranked = (
            _train_ranking(folder, inter, catalogue, lake.read("users"), ranking, shown)
            if ranking is not None
            else {}
        )
    bundle = Bundle(
        version=version,
        model_name=name,
        model=fitted,
        users=users,
        items=items,
        history=X,
        popularity=np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float32),
        listed=_listed_for(items, catalogue),
        titles=_titles_for(items, catalogue),
        log_offset=log_offset,
        parent_version=parent_version,
        config={"model": model, "k": k, "params": params or {}, "ranking": ranking},
        metrics={"selection": selection, "protocol": protocol, "k": k},
        meta={
            "n_interactions": len(inter),
            "time_min_ms": int(inter.timestamp.min()),
            "time_max_ms": int(inter.timestamp.max()),
        },
    )
    bundle.meta["ranking"] = ranked
    with step("bundle write"):
        bundle.save(folder)  # the manifest last: the ranking files are already in place
    log.info("trained %s as version %s", name, version)
    return TrainSummary(
        version, name, len(users), len(items), len(inter), selection, protocol, time.perf_counter() - start,
        ranked, parent_version=parent_version,
    )  # fmt: skip


def training_events(lake: Lake, log_table: pa.Table) -> pa.Table:
    """Every interaction the engine holds: the lake's, then ``log_table``'s (the event log)."""
    table = lake.read("interactions")
    if log_table.num_rows:
        table = pa.concat_tables([table, log_table.cast(table.schema)])
    return table


def _train_ranking(
    folder: Path,
    inter: Interactions,
    catalogue: pa.Table,
    users: pa.Table,
    params: dict[str, Any],
    impressions: pa.Table | None = None,
) -> dict[str, Any]:
    """Fit the retrieval + ranking pipeline into ``folder``; its report, or why it was skipped.

    ``impressions`` (served pages), when given, correct the ranker for position bias.
    """
    from funnel.ranking.model import RankingPipeline
    from funnel.ranking.serving import save_serving_data
    from funnel.retrieval.sources.common import retrieval_data

    with step("datasets"):
        data = retrieval_data(inter, catalogue, users)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        pipeline = RankingPipeline(**params).fit(data, workdir=folder, impressions=impressions)
    except (ValidationError, ValueError) as exc:
        log.warning("ranking pipeline not trained: %s", exc)
        return {"skipped": str(exc)}
    with step("bundle write"):
        pipeline.save(folder / "ranking")
        save_serving_data(folder, inter.to_table(), data.items, _serving_users(data.users, users))
    report = pipeline.report_
    return {k: report[k] for k in REPORT_KEYS}


def _serving_users(aligned: pa.Table, users: pa.Table) -> pa.Table:
    """The users of the training interactions (``aligned``), then every other user of the lake.

    Serving reads a user's segments (country, age bucket) from this table: a user imported with a
    country but without interactions yet must get the pages of that country, not the empty page
    of a user with no country (every item licensed by region is then filtered out).
    """
    if not users.num_rows:
        return aligned
    known = aligned.column("user_id").combine_chunks()
    other = users.filter(pc.invert(pc.is_in(users.column("user_id"), value_set=known)))
    return pa.concat_tables([aligned, other.select(aligned.column_names).cast(aligned.schema)])
