"""The evaluation runner: split once, fit each model on train, rank for the test users, score.

Each model is fitted on the training matrix, then asked for the top ``k`` of every user with at
least one test item, from that user's training history, with the training items excluded. The
lists are scored with :mod:`funnel.eval.metrics` (novelty from training popularity, diversity
over training-matrix columns).

Example:
    >>> import pyarrow as pa
    >>> from funnel.core.interactions import Interactions
    >>> t = pa.table({"user_id": ["a", "a", "a", "b", "b", "b", "c", "c"],
    ...               "item_id": ["x", "y", "z", "x", "y", "w", "x", "z"]})
    >>> report = evaluate_models(Interactions.from_table(t), "strat", 2, ["pop", "ease"],
    ...                          params={"ease": {"l2": 1.0}}, progress=False)
    >>> sorted(report.to_json_dict()["results"]["pop"])  # user c (2 items) is training-only
    ['coverage', 'diversity', 'fit_seconds', 'map', 'mrr', 'ndcg', 'novelty', 'precision', 'recall']
    >>> report.n_users, report.to_json_dict(include_meta=True)["n_items"], report.rows()[1]["model"]
    (2, 4, 'ease')
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa

from funnel.core.errors import ConfigError, ValidationError
from funnel.core.interactions import Interactions
from funnel.eval.metrics import coverage, diversity, novelty, ranking_metrics
from funnel.eval.splits import Split, make_split
from funnel.retrieval.models import MODELS, make_model

PIPELINE = "pipeline"
SOURCE_MODELS = ("two_tower",)
"""Retrieval sources that are also evaluated as models on their own (``evaluate_source``)."""
"""The model name of the full retrieval + ranking pipeline in :func:`evaluate_models`."""
METRICS = ("ndcg", "recall", "precision", "map", "mrr", "coverage", "novelty", "diversity", "fit_seconds")
"""The keys of each model's result, in table order."""


@dataclass
class EvaluationReport:
    """The metrics of each model on one split of one dataset.

    Attributes:
        results: model name -> metric name (:data:`METRICS`) -> value.
        n_users: users evaluated (those with test items); n_items: catalogue size.
        eval_seconds: model name -> seconds spent recommending and scoring.
    """

    dataset: str
    protocol: str
    k: int
    ratio: float
    seed: int
    n_users: int
    n_items: int
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_seconds: dict[str, float] = field(default_factory=dict)

    def to_json_dict(self, *, include_meta: bool = False) -> dict[str, Any]:
        """``{"dataset", "protocol", "k", "results"}``; ``include_meta`` adds ratio, seed, sizes."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "k": self.k,
            "results": {name: dict(res) for name, res in self.results.items()},
        }
        if include_meta:
            out.update(ratio=self.ratio, seed=self.seed, n_users=self.n_users, n_items=self.n_items)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per model (``{"model": name, **metrics}``), for printing as a table."""
        return [{"model": name, **res} for name, res in self.results.items()]


def score_lists(recs: Any, split: Split, users: Any, k: int) -> dict[str, float]:
    """All metrics but ``fit_seconds`` for the lists ``recs`` of ``users`` (rows of ``split``)."""
    res = ranking_metrics(recs, split.test[users], k)
    res["coverage"] = coverage(recs, split.train.shape[1])
    res["novelty"] = novelty(recs, split.train)
    res["diversity"] = diversity(recs, split.train.T)
    return res


def evaluate_models(
    interactions: Interactions,
    protocol: str,
    k: int,
    models: list[str],
    ratio: float = 0.75,
    seed: int = 42,
    params: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    dataset: str = "dataset",
    items_table: pa.Table | None = None,
    users_table: pa.Table | None = None,
    max_test_users: int | None = None,
) -> EvaluationReport:
    """Split ``interactions`` with ``protocol`` and evaluate each named model at ``k``.

    Args:
        interactions: the events (positive ones count; see :mod:`funnel.eval.splits`).
        protocol: ``strat``, ``usertemporal`` or ``temporal``.
        k: list length (the metrics' cut-off).
        models: names from :data:`funnel.retrieval.models.MODELS`, evaluated in this order.
        ratio: the training fraction of the split.
        seed: the split's random seed (``strat``).
        params: model name -> hyper-parameters overriding the defaults.
        progress: print one line per step to stderr.
        dataset: the name written in the report.
        items_table: the catalogue table, for ``pipeline`` (item metadata).
        users_table: the users table, for ``pipeline`` (segments).
        max_test_users: score at most this many test users (a sample seeded by ``seed``; the models
            still train on the whole training part). ``None``: every test user.

    The names in :data:`SOURCE_MODELS` (``two_tower``) evaluate that retrieval source alone
    (:func:`funnel.ranking.evaluate.evaluate_source`). The name ``pipeline`` (:data:`PIPELINE`)
    evaluates the full retrieval + ranking pipeline (:func:`funnel.ranking.evaluate.evaluate_pipeline`)
    on the same split; ``params["pipeline"]`` are its :class:`~funnel.ranking.model.RankingPipeline`
    arguments.
    """
    if k < 1:
        raise ValidationError(f"must be >= 1, got {k}", field="k")
    known = [*MODELS, *SOURCE_MODELS, PIPELINE]
    unknown = [name for name in models if name not in known]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    params = params or {}
    t0 = time.perf_counter()
    split = make_split(interactions, protocol, ratio, seed)
    if max_test_users is not None:
        split = split.with_test_users(max_test_users, seed)
    users = split.test_users
    report = EvaluationReport(dataset, protocol, k, ratio, seed, len(users), split.train.shape[1])
    if progress:
        print(
            f"split {protocol} ratio={ratio}: {split.train.nnz} train / {split.test.nnz} test events, "
            f"{len(users)} test users ({time.perf_counter() - t0:.1f}s)",
            file=sys.stderr,
        )
    history = split.train[users]
    for name in models:
        if name == PIPELINE or name in SOURCE_MODELS:
            from funnel.ranking.evaluate import evaluate_pipeline, evaluate_source

            t = time.perf_counter()
            evaluate = evaluate_pipeline if name == PIPELINE else partial(evaluate_source, name)
            result = evaluate(interactions, split, k, params.get(name), items_table, users_table)
            report.results[name] = {m: result[m] for m in METRICS}
            report.eval_seconds[name] = time.perf_counter() - t - result["fit_seconds"]
            if progress:
                print(
                    f"{name}: ndcg@{k}={result['ndcg']:.4f} fit {result['fit_seconds']:.1f}s", file=sys.stderr
                )
            continue
        model = make_model(name, **params.get(name, {}))
        t = time.perf_counter()
        model.fit(split.train)
        fit_seconds = time.perf_counter() - t
        t = time.perf_counter()
        recs, _ = model.recommend(history, k)
        result = score_lists(recs, split, users, k)
        result["fit_seconds"] = fit_seconds
        report.results[name] = {m: result[m] for m in METRICS}
        report.eval_seconds[name] = time.perf_counter() - t
        if progress:
            print(
                f"{name}: ndcg@{k}={result['ndcg']:.4f} fit {fit_seconds:.1f}s, "
                f"eval {report.eval_seconds[name]:.1f}s",
                file=sys.stderr,
            )
    return report
