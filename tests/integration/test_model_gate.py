"""The promotion gate end to end: a model trained on corrupted data is rejected, rollback is exact.

The world: a seeded synthetic dataset (2000 users, 150 items, 60k interactions). A tenth of the
users ("regulars") are the live traffic; v1 is trained on their events up to ``T2`` (the 80th
percentile of their event times). Then two things arrive: a backfill of the other users' events up
to ``T2`` (6.7 times v1's data) and the regulars' events after ``T2``. In the corrupted run the
backfill's item ids went through a wrong mapping — a fixed permutation of the catalogue, so every
label is shuffled — and v2 trained on it must be rejected by the gate, whose held-out window is
the latest fifth of the regulars' events after ``T2`` (after v1's data; v2's refit learns from the
backfill and the rest of those events). In the control run the backfill is correct and v2 must
go live: the gate is not just refusing every second model.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from funnel.data.synthetic import SyntheticConfig, generate
from funnel.engine import Engine

MODEL = "ease"  # a named baseline: the gate is the same for the full pipeline, only slower
SEED = 2


@pytest.fixture(scope="module")
def world():
    ds = generate(SyntheticConfig(n_users=2000, n_items=150, n_interactions=60_000, seed=SEED))
    t = ds.interactions
    users = np.array(t.column("user_id").to_pylist())
    ts = pc.cast(t.column("timestamp"), pa.int64()).to_numpy()
    everyone = np.unique(users)
    backfilled = set(np.random.default_rng(SEED).choice(everyone, int(len(everyone) * 0.9), replace=False))
    in_backfill = np.array([u in backfilled for u in users])
    t2 = np.quantile(ts[~in_backfill], 0.8)
    ids = sorted(set(t.column("item_id").to_pylist()))
    wrong = dict(zip(ids, np.random.default_rng(0).permutation(ids), strict=True))
    backfill = t.filter(pa.array(in_backfill & (ts <= t2)))
    col = backfill.column_names.index("item_id")
    corrupted = backfill.set_column(
        col, "item_id", pa.array([wrong[i] for i in backfill["item_id"].to_pylist()])
    )
    return {
        "items": ds.items,
        "users": ds.users,
        "v1": t.filter(pa.array(~in_backfill & (ts <= t2))),
        "later": t.filter(pa.array(~in_backfill & (ts > t2))),
        "backfill": backfill,
        "corrupted": corrupted,
        "regulars": sorted(set(users[~in_backfill].tolist()))[:40],
    }


def _engine(path, world) -> Engine:
    engine = Engine(path)
    engine.import_items(world["items"])
    engine.import_users(world["users"])
    engine.import_interactions(world["v1"])
    return engine


def _pages(engine: Engine, users: list[str]) -> dict[str, list[tuple[str, float, str]]]:
    return {u: [(r.item_id, r.score, r.reason) for r in engine.recommend(u, k=10)] for u in users}


def test_corrupted_v2_is_rejected_with_its_reason_and_rollback_restores_v1_exactly(tmp_path, world):
    engine = _engine(tmp_path / "d", world)
    v1 = engine.train(model=MODEL)
    assert v1.status == "live" and engine.model_version == v1.version
    assert v1.gate["passed"] and v1.gate["live_version"] is None  # first model: guardrails only
    before = _pages(engine, world["regulars"])

    engine.import_interactions(world["corrupted"])
    engine.import_interactions(world["later"])
    v2 = engine.train(model=MODEL)

    assert v2.status == "rejected"
    assert engine.model_version == v1.version  # v1 still serves
    ndcg = next(c for c in v2.gate["checks"] if c["name"] == "ndcg")
    assert not ndcg["passed"] and ndcg["value"] < ndcg["threshold"] < ndcg["live"]
    assert ndcg["value"] < 0.85 * ndcg["live"]  # not a near miss: the labels are wrong
    registry = engine.registry
    # held out: the latest of the regulars' events after v1's data (neither v1 nor v2's refit saw them)
    assert v2.gate["window"]["start_ms"] > registry.manifest(v1.version).data_window.end_ms
    assert v2.gate["window"]["n_users"] >= 20
    assert registry.versions() == [v1.version, v2.version]  # the rejected version stays listed
    m2 = registry.manifest(v2.version)
    assert m2.status == "rejected" and m2.reason.startswith("NDCG@10") and "regresses" in m2.reason
    assert m2.parent_version == v1.version and m2.metrics["gate"]["passed"] is False
    assert _pages(engine, world["regulars"]) == before  # nothing changed for users

    # an operator overrides the gate, sees v2's pages, and rolls back: v1's pages, bit for bit
    registry.manual_promote(v2.version, force=True)
    assert engine.model_version == v2.version
    assert _pages(engine, world["regulars"]) != before
    assert registry.rollback() == v1.version
    assert _pages(engine, world["regulars"]) == before
    assert registry.status(v1.version) == "live" and registry.status(v2.version) == "retired"
    engine.close()


def test_a_correct_backfill_passes_the_same_gate(tmp_path, world):
    engine = _engine(tmp_path / "d", world)
    v1 = engine.train(model=MODEL)
    engine.import_interactions(world["backfill"])
    engine.import_interactions(world["later"])
    v2 = engine.train(model=MODEL)
    assert v2.status == "live", v2.gate["reason"]
    assert engine.model_version == v2.version and v2.parent_version == v1.version
    ndcg = next(c for c in v2.gate["checks"] if c["name"] == "ndcg")
    assert ndcg["passed"] and ndcg["value"] >= ndcg["live"]
    assert engine.registry.status(v1.version) == "retired"
    engine.close()
