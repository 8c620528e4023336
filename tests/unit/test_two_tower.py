"""TwoTowerSource: protocol, it learns, the logQ correction, cold items from content, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from funnel.core.idmap import IdMap
from funnel.core.interactions import Interactions
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.retrieval.source import CandidateSource, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.two_tower import TwoTowerSource
from funnel.retrieval.two_tower_model import training_examples


def _split(seed, n_users=300, n_items=200, n_interactions=15000):
    """Hold out each user's last new positive item (all its events); train on the rest."""
    ds = generate(SyntheticConfig(n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=seed))
    inter = Interactions.from_table(
        ds.interactions, IdMap(ds.users.column("user_id")), IdMap(ds.items.column("item_id"))
    )
    pos = inter.positive_mask()
    ex = training_examples(inter.user_idx[pos], inter.item_idx[pos], inter.timestamp[pos], 1)
    last = np.flatnonzero(np.r_[ex.user[1:] != ex.user[:-1], True])
    last = last[ex.history[last, 0] >= 0]  # users with something left to train on
    held = dict(zip(ex.user[last].tolist(), ex.target[last].tolist(), strict=True))
    key = inter.user_idx.astype(np.int64) * n_items + inter.item_idx
    train = inter.subset(~np.isin(key, [u * n_items + i for u, i in held.items()]))
    data = RetrievalData(train, train.to_csr(), ds.items, ds.users, int(inter.timestamp.max()))
    return ds, data, held


def _query(ds, data, users):
    attrs = [json.loads(a) for a in ds.users.column("attributes").to_pylist()]
    tr = data.interactions
    pos = tr.positive_mask()
    recent = []
    for u in users:
        sel = np.flatnonzero((tr.user_idx == u) & pos)
        items = tr.item_idx[sel][np.argsort(-tr.timestamp[sel], kind="stable")]
        recent.append(items[np.sort(np.unique(items, return_index=True)[1])])
    return RetrievalQuery([f"u{u}" for u in users], data.X[users], recent, [attrs[u] for u in users], 0)


def _recall(cands, users, held):
    return float(np.mean([held[u] in c.items for u, c in zip(users, cands, strict=True)]))


@pytest.fixture(scope="module")
def world():
    ds, data, held = _split(0)
    return ds, data, held, TwoTowerSource(embedder="tfidf", seed=0).fit(data)


def test_protocol_shapes_and_seen_items(world):
    ds, data, _, src = world
    assert isinstance(src, CandidateSource) and src.name == "two_tower"
    users = np.arange(40)
    out = src.retrieve(_query(ds, data, users), 30)
    assert len(out) == len(users)
    for u, c in zip(users, out, strict=True):
        assert len(c) == 30 and len(set(c.items.tolist())) == 30
        assert c.items.dtype == np.int32 and c.scores.dtype == np.float32 and c.anchor.dtype == np.int32
        assert not set(c.items.tolist()) & set(data.X[u].indices.tolist())
        assert np.all(np.diff(c.scores) <= 1e-6) and set(c.reason.tolist()) == {"users_like_you"}
    assert src.retrieve(_query(ds, data, np.array([], np.int64)), 5) == []


def test_save_load_round_trip(world, tmp_path):
    ds, data, _, src = world
    src.save(tmp_path / "tt")
    again = TwoTowerSource.load(tmp_path / "tt")
    q = _query(ds, data, np.arange(50))
    np.testing.assert_array_equal(src.user_vectors(q), again.user_vectors(q))
    for a, b in zip(src.retrieve(q, 20), again.retrieve(q, 20), strict=True):
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_deterministic_with_a_seed():
    _, data, _ = _split(5, 100, 80, 3000)
    a, b = (TwoTowerSource(embedder="tfidf", epochs=2, seed=3).fit(data) for _ in range(2))
    np.testing.assert_array_equal(a.item_vecs_, b.item_vecs_)
    c = TwoTowerSource(embedder="tfidf", epochs=2, seed=4).fit(data)
    assert not np.array_equal(a.item_vecs_, c.item_vecs_)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_learns_better_than_random_and_popularity(seed):
    ds, data, held = _split(seed, 400, 300, 20000)
    users = np.array(sorted(held))
    cands = TwoTowerSource(embedder="tfidf", seed=seed).fit(data).retrieve(_query(ds, data, users), 50)
    recall = _recall(cands, users, held)
    pop = np.asarray(data.X.sum(axis=0)).ravel()
    order = np.argsort(-pop, kind="stable")
    pop_recall = np.mean([held[u] in order[data.X[u].toarray()[0, order] == 0][:50] for u in users])
    random_recall = np.mean([50 / (300 - data.X[u].nnz) for u in users])
    # measured (seeds 0, 1, 2): two-tower 0.60 / 0.63 / 0.64, popularity 0.47 / 0.53 / 0.52, random 0.17
    assert recall > 2 * random_recall
    assert recall > pop_recall + 0.05, (recall, pop_recall)


def test_logq_correction_undoes_the_in_batch_popularity_penalty(world):
    """In-batch negatives are drawn by popularity, so plain in-batch softmax over-penalises popular
    items; the logQ correction removes that penalty: its retrieved items are *more* popular (closer
    to what users go on to engage with) and recall goes up."""
    ds, data, held, corrected = world
    plain = TwoTowerSource(embedder="tfidf", seed=0, logq_weight=0.0).fit(data)
    users = np.array(sorted(held))
    q = _query(ds, data, users)
    log_pop = np.log1p(np.asarray(data.X.sum(axis=0)).ravel())
    with_c, without = corrected.retrieve(q, 50), plain.retrieve(q, 50)
    mean_pop = [float(np.mean([log_pop[c.items].mean() for c in cands])) for cands in (with_c, without)]
    target = float(np.mean([log_pop[held[u]] for u in users]))
    # measured: corrected 2.49, plain 2.00, held-out items 2.72; recall@50 0.71 vs 0.62
    assert mean_pop[1] < mean_pop[0] < target + 0.5
    assert _recall(with_c, users, held) > _recall(without, users, held)


def test_cold_item_gets_a_vector_from_content_alone(world):
    ds, _, _, src = world
    cats = [c or [] for c in ds.items.column("categories").to_pylist()]
    n = len(cats)
    for j in [i for i in range(n) if len(cats[i]) == 1][:5]:
        src.add_items(ds.items.slice(j, 1), np.array([n]))  # same metadata, new index, no history
        v = src.item_vecs_[n]
        assert not src.trained_[n] and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
        sims = src.item_vecs_[:n] @ v
        near = np.argsort(-sims)[:10]
        assert np.mean([cats[j][0] in cats[i] for i in near]) >= 0.5
        same = np.array([cats[j][0] in c for c in cats])
        assert sims[same].mean() > sims[~same].mean() + 0.2
        hit = src.index_.search(v[None], 1)[0][0, 0]
        assert hit in (n, j)
    q = RetrievalQuery(["x"], sp.csr_matrix((1, n + 1)), [np.array([], np.int64)], [{}], 0)
    assert len(src.retrieve(q, 5)[0]) == 5
