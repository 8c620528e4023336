"""The contract every candidate source honours: one suite, parametrised over ``CASES``.

A new source joins with one line in ``CASES``: ``(name, hyper-parameters)``, the name being its
key in ``funnel.retrieval.sources.registry.SOURCES``.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from funnel.core.artifacts import read_manifest
from funnel.core.errors import CorruptDataError, NotTrainedError
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.retrieval.source import Candidates, CandidateSource, RetrievalQuery
from funnel.retrieval.sources.common import retrieval_data, user_attributes
from funnel.retrieval.sources.registry import SOURCES, load_source, make_source, source_class

CASES = [
    ("als", {"factors": 8, "iterations": 4}),
    ("item_knn", {"k_neighbours": 20}),
    ("trending", {"half_life_days": 3.0}),
    ("new_items", {"window_days": 60.0}),
    ("ease", {"l2": 10.0}),
    ("editorial", {"curated": ["i000003", "i000007", "i000001"], "sponsored": ["i000009"]}),
    ("content", {"embedder": "tfidf", "dim": 16}),
    (
        "two_tower",
        {
            "dim": 8,
            "hidden": 16,
            "id_dim": 8,
            "feat_dim": 4,
            "epochs": 1,
            "embedder": "tfidf",
            "content_dim": 8,
        },
    ),
]

DS = generate(SyntheticConfig(n_users=150, n_items=120, n_interactions=4000, seed=3))
DATA = retrieval_data(DS.interactions, DS.items, DS.users)


def make_query(users: np.ndarray) -> RetrievalQuery:
    X = DATA.X
    attrs = user_attributes(DATA.users, ("country", "age_bucket"))
    recent = [X[u].indices[::-1].astype(np.int64) for u in users]
    segments = [{f: str(attrs[f][u]) for f in attrs} for u in users]
    return RetrievalQuery([f"u{u}" for u in users], X[users], recent, segments, DATA.now_ms)


QUERY = make_query(np.arange(12))


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request):
    name, params = request.param
    if source_class(name) is None:
        pytest.skip(f"source {name} not available")
    return name, params


_FITTED: dict[str, object] = {}


@pytest.fixture
def fitted(case):
    """Fitted once per source for the whole module (the tests only read it)."""
    name, params = case
    if name not in _FITTED:
        _FITTED[name] = make_source(name, **params).fit(DATA)
    return _FITTED[name]


def test_is_a_candidate_source_and_fit_returns_self(case):
    name, params = case
    source = make_source(name, **params)
    assert isinstance(source, CandidateSource)
    assert source.fit(DATA) is source
    assert source.name == name


def test_unfitted_source_refuses_to_retrieve(case):
    name, params = case
    with pytest.raises(NotTrainedError):
        make_source(name, **params).retrieve(QUERY, 5)


def test_one_list_per_user_well_typed_best_first(fitted):
    got = fitted.retrieve(QUERY, 15)
    assert len(got) == len(QUERY)
    assert sum(len(c) for c in got) > 0
    for c in got:
        assert isinstance(c, Candidates) and len(c) <= 15
        assert c.items.dtype == np.int32 and c.scores.dtype == np.float32 and c.anchor.dtype == np.int32
        assert len(c.scores) == len(c.reason) == len(c.anchor) == len(c)
        assert len(set(c.items.tolist())) == len(c)
        assert np.all((c.items >= 0) & (c.items < DATA.X.shape[1]))
        assert np.all(np.diff(c.scores) <= 1e-6)
        assert all(isinstance(r, str) and r for r in c.reason)
        assert np.all((c.anchor >= -1) & (c.anchor < DATA.X.shape[1]))


def test_seen_items_are_excluded(fitted):
    for u, c in enumerate(fitted.retrieve(QUERY, 50)):
        assert not set(c.items.tolist()) & set(QUERY.histories[u].indices.tolist())


def test_batch_first_each_user_as_if_alone(fitted):
    batch = fitted.retrieve(QUERY, 10)
    for u in (0, 5):
        alone = fitted.retrieve(make_query(np.array([u])), 10)[0]
        assert alone.items.tolist() == batch[u].items.tolist()
        np.testing.assert_allclose(alone.scores, batch[u].scores, rtol=1e-4, atol=1e-5)


def test_k_bounds_the_lists_and_prefixes_agree(fitted):
    long, short = fitted.retrieve(QUERY, 20), fitted.retrieve(QUERY, 3)
    for a, b in zip(long, short, strict=True):
        assert len(b) <= 3
        assert b.items.tolist() == a.items[: len(b)].tolist()


def test_empty_history_user_gets_a_list_no_error(fitted):
    cold = RetrievalQuery(
        ["new"],
        sp.csr_matrix((1, DATA.X.shape[1]), dtype=np.float32),
        [np.empty(0, np.int64)],
        [{"country": "US"}],
        DATA.now_ms,
    )
    got = fitted.retrieve(cold, 5)
    assert len(got) == 1 and len(got[0]) <= 5


def test_save_load_round_trip_same_candidates(fitted, tmp_path, case):
    fitted.save(tmp_path / "s")
    manifest = read_manifest(tmp_path / "s")
    assert isinstance(manifest["format_version"], int)
    again = load_source(tmp_path / "s")
    assert type(again) is type(fitted)
    for a, b in zip(fitted.retrieve(QUERY, 10), again.retrieve(QUERY, 10), strict=True):
        assert a.items.tolist() == b.items.tolist()
        assert a.reason.tolist() == b.reason.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)


def test_load_refuses_another_kind(fitted, tmp_path, case):
    fitted.save(tmp_path / "s")
    other = next(cls for n, cls in SOURCES.items() if n != case[0])
    with pytest.raises(CorruptDataError):
        other.load(tmp_path / "s")
