"""New catalogue items are retrievable as soon as their upsert returns, before any retraining.

``RecommendationService.upsert_items`` writes the lake and the entity feed, and the pipeline
indexes the new rows at once (``Pipeline.add_items``): the new-items source ranks them by
publication time, the content source embeds their text into its ANN index. Existing items keep
their features, so adding an unlisted item changes nobody's page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from funnel.api.service import RecommendationRequest, RecommendationService
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.engine import Engine
from funnel.retrieval.source import RetrievalQuery

DATA = generate(SyntheticConfig(n_users=60, n_items=80, n_interactions=3000, seed=1))
CONTENT = {"sources": {"als": {}, "content": {"embedder": "tfidf", "dim": 16}}}


def _engine(folder: Path, ranking: dict | None) -> Engine:
    engine = Engine(folder)
    engine.import_items(DATA.items)
    engine.import_users(DATA.users)
    engine.import_interactions(DATA.interactions)
    engine.train(ranking=ranking or {})
    return engine


@pytest.fixture(scope="module")
def default_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine(tmp_path_factory.mktemp("default"), None)


@pytest.fixture(scope="module")
def content_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine(tmp_path_factory.mktemp("content"), CONTENT)


def _retrieved(engine: Engine, user: str) -> tuple[list[str], list[str]]:
    """Item ids the live pipeline retrieves for ``user`` and, per item, its strongest source."""
    pipeline = engine.pipeline()
    server = pipeline.ranking
    assert server is not None
    query = RetrievalQuery([user], pipeline.history_rows([user]), server._recent([user]), [{}], server.now_ms)
    merged = server.pipeline.retrieve(query)[0]
    ids = pipeline.bundle.items.keys_of(merged.items)
    return ids, [merged.sources[s] for s in merged.source.tolist()]


def _item(item_id: str) -> dict:
    row = DATA.items.filter(pc.equal(DATA.items.column("item_id"), item_id)).to_pylist()[0]
    return {k: row[k] for k in ("title", "description", "categories", "tags", "creator_id")}


def test_a_new_published_item_is_retrieved_by_the_new_items_source(default_engine: Engine) -> None:
    svc = RecommendationService(default_engine)
    user = DATA.users.column("user_id")[3].as_py()
    clock = default_engine.pipeline().ranking.now_ms  # the data clock: "now" for this historical data
    assert "fresh-1" not in _retrieved(default_engine, user)[0]
    svc.upsert_items([{"item_id": "fresh-1", "title": "A brand new show", "published_at": clock - 60_000}])
    ids, sources = _retrieved(default_engine, user)
    assert "fresh-1" in ids
    assert sources[ids.index("fresh-1")] == "new_items"
    cold = svc.recommend(RecommendationRequest("someone-new", limit=40))
    assert "fresh-1" in [r.item_id for r in cold.items]


def test_a_new_item_is_retrieved_by_content_similarity(content_engine: Engine) -> None:
    svc = RecommendationService(content_engine)
    user = DATA.users.column("user_id")[3].as_py()
    liked = svc.history.get(user, 1)[0]["item_id"]
    # no publication time: the new-items source cannot surface it, only its text can
    twin = {**_item(liked), "item_id": "twin-of-liked", "published_at": None}
    before = _retrieved(content_engine, user)[0]
    svc.upsert_items([twin])
    ids, sources = _retrieved(content_engine, user)
    assert "twin-of-liked" not in before and "twin-of-liked" in ids
    assert sources[ids.index("twin-of-liked")] == "content"


def test_adding_an_unlisted_item_changes_no_page(default_engine: Engine) -> None:
    svc = RecommendationService(default_engine)
    users = DATA.users.column("user_id").to_pylist()[10:16]

    def pages() -> list[list[tuple[str, float]]]:
        pages = [svc.recommend(RecommendationRequest(u, 10)) for u in users]
        return [[(r.item_id, r.score) for r in page.items] for page in pages]

    before = pages()
    n_before = default_engine.pipeline().n_items
    svc.upsert_items([{"item_id": "hidden-1", "title": "Not yet", "status": "unlisted"}])
    assert default_engine.pipeline().n_items == n_before + 1
    assert pages() == before
    assert np.all(default_engine.pipeline().bundle.listed[:n_before])
    assert not default_engine.pipeline().bundle.listed[n_before]
