"""HotSwapper in the service: a promoted version swaps in with the catalogue changes; a bad one does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa

from funnel.api.entity_feed import EntityChange
from funnel.api.service import RecommendationRequest, RecommendationService
from funnel.engine import Engine
from funnel.training.manifest import ModelManifest


def _engine(tmp_path: Path) -> Engine:
    eng = Engine(tmp_path / "data")
    users = [f"u{i}" for i in range(6) for _ in range(3)]
    items = [f"i{(i * 7 + j) % 9}" for i in range(6) for j in range(3)]
    eng.import_interactions(
        pa.table({"user_id": users, "item_id": items, "timestamp": [1_700_000_000 + i for i in range(18)]})
    )
    eng.train(model="pop")
    return eng


def _release(eng: Engine, source: str) -> str:
    """``source``'s bundle under a new version name (status retired: promotable without --force)."""
    version = eng.registry.new_version()
    shutil.copytree(eng.registry.path(source), eng.registry.root / version)
    manifest = ModelManifest.read(eng.registry.root / version)
    manifest.version, manifest.status = version, "retired"
    manifest.write(eng.registry.root / version)
    return version


def _served(svc: RecommendationService) -> str | None:
    page = svc.recommend(RecommendationRequest("u1", limit=3))
    assert len(page.items) == 3
    return page.model_version


def test_promoted_version_swaps_in_with_the_catalogue_changes_since(tmp_path: Path):
    eng = _engine(tmp_path)
    v1 = eng.model_version
    v2 = _release(eng, v1)
    svc = RecommendationService(eng)
    svc.swapper.poll_s = 0.0  # look at LIVE on every request
    assert _served(svc) == v1
    svc.upsert_items([{"item_id": "fresh", "title": "Fresh", "published_at": 1_700_000_100_000}])
    svc.unlist("i0")
    held = eng.pipeline(catch_up=False)
    n_items = held.n_items
    assert n_items == 10 and not held.bundle.listed[held.bundle.items.get("i0")]

    eng.registry.promote(v2)
    assert _served(svc) == v1  # this request started the load and was served by v1
    assert svc.swapper.wait(30)
    assert _served(svc) == v2 and svc.swapper.swaps == 1
    pipeline = eng.pipeline(catch_up=False)
    assert pipeline.bundle.version == v2 and pipeline.n_items == n_items  # "fresh" kept (from the lake)
    assert not pipeline.bundle.listed[pipeline.bundle.items.get("i0")]  # the DELETE kept
    assert "i0" not in [r.item_id for r in svc.recommend(RecommendationRequest("u1", limit=9)).items]
    assert b"funnel_model_swaps_total 1.0" in svc.metrics.render()[0]


def test_a_bundle_that_fails_to_load_leaves_the_old_version_serving(tmp_path: Path):
    eng = _engine(tmp_path)
    v1 = eng.model_version
    svc = RecommendationService(eng)
    svc.swapper.poll_s = 0.0  # look at LIVE on every request
    assert _served(svc) == v1
    broken = _release(eng, v1)
    shutil.rmtree(eng.registry.root / broken / "model")
    eng.registry.promote(broken)
    assert _served(svc) == v1
    assert svc.swapper.wait(30) and svc.swapper.failures == 1
    assert _served(svc) == v1 and svc.swapper.check() == "retry later"  # not retried in a loop
    eng.registry.rollback()
    assert _served(svc) == v1 and svc.swapper.check() == "idle"


def test_a_read_ahead_overtaken_by_another_request_does_not_reapply_its_changes(tmp_path: Path):
    """Changes read before the lock are applied only if no request moved the feed meanwhile."""
    svc = RecommendationService(_engine(tmp_path))
    _served(svc)
    svc.feed.append([EntityChange("unlist", "i3", {})])  # another process's DELETE
    ahead = svc._read_ahead()  # a request reads ahead, then waits for the lock ...
    assert ahead is not None and [c.kind for c in ahead.changes] == ["unlist"]
    svc.feed.append([EntityChange("item", "i3", {"status": "listed"})])  # ... the item is relisted
    assert svc.catch_up()  # ... and another request folds both changes in first
    with svc._lock:
        assert svc._fold_in(ahead)  # the stale unlist is not applied again over the relist
    bundle = svc.engine.pipeline(catch_up=False).bundle
    assert bool(bundle.listed[bundle.items.lookup(["i3"])[0]]) and "i3" not in svc._unlisted
