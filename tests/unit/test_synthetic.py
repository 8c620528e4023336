"""The synthetic generator: schemas, reproducibility, the interaction process, the ground truth."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import scipy.sparse as sp

from funnel.core.errors import ConfigError, CorruptDataError, NotFoundError
from funnel.core.idmap import IdMap
from funnel.core.interactions import Interactions
from funnel.core.schema import IMPRESSIONS, INTERACTIONS, ITEMS, USERS
from funnel.data.synthetic import SyntheticConfig, generate, read_dataset, write_dataset

CONFIG = SyntheticConfig(n_users=300, n_items=200, n_interactions=20_000, seed=0)


@pytest.fixture(scope="module")
def ds():
    return generate(CONFIG)


@pytest.fixture(scope="module")
def inter(ds):
    return Interactions.from_table(ds.interactions, IdMap(ds.users["user_id"]), IdMap(ds.items["item_id"]))


def col(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_numpy(zero_copy_only=False)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# ---------------------------------------------------------------- tables


def test_tables_have_the_canonical_schemas(ds):
    assert ds.items.schema.equals(ITEMS)
    assert ds.users.schema.equals(USERS)
    assert ds.interactions.schema.equals(INTERACTIONS)
    assert ds.impressions.schema.equals(IMPRESSIONS)
    assert (ds.items.num_rows, ds.users.num_rows) == (200, 300)
    assert col(ds.items, "item_id")[123] == "i000123"
    assert col(ds.users, "user_id")[42] == "u000042"


def test_interaction_count_meets_the_target_within_one_session(ds):
    assert 20_000 <= ds.interactions.num_rows <= 20_000 + 4 * CONFIG.slate_size


def test_item_columns(ds):
    cats = ds.items.column("categories").to_pylist()
    assert {len(c) for c in cats} == {1, 2}
    assert all(len(set(c)) == len(c) for c in cats)
    tags = ds.items.column("tags").to_pylist()
    assert {len(t) for t in tags} <= {1, 2, 3} and all(len(set(t)) == len(t) for t in tags)
    assert set(col(ds.items, "status")) == {"listed"}
    attrs = [json.loads(a) for a in col(ds.items, "attributes")]
    assert {a["age_rating"] for a in attrs} <= {"all", "13+", "18+"}
    # a regional item is licensed in exactly one country; the rest list no regions (everywhere)
    regional = [a["regions"] for a in attrs if "regions" in a]
    assert all(len(r) == 1 and r[0] in CONFIG.countries for r in regional)
    assert 0 < len(regional) < len(attrs)
    assert {a["sponsored"] for a in attrs} <= {True, False}
    published = col(ds.items, "published_at")
    assert np.all(np.diff(published) >= 0)  # item indices follow publication order
    new = published >= CONFIG.start_ms
    assert 0.1 < new.mean() < 0.3  # new_item_fraction = 0.2
    assert all(t and d for t, d in zip(col(ds.items, "title"), col(ds.items, "description"), strict=True))


def test_user_segments(ds):
    attrs = [json.loads(a) for a in col(ds.users, "attributes")]
    assert {a["country"] for a in attrs} <= set(CONFIG.countries)
    assert {a["age_bucket"] for a in attrs} <= set(CONFIG.age_buckets)
    assert {a["device"] for a in attrs} == set(CONFIG.devices)
    assert np.all(col(ds.users, "created_at") < CONFIG.end_ms)


def test_text_carries_the_category_signal():
    """Word counts learned on half the items predict the primary category of the other half."""
    ds = generate(SyntheticConfig(n_users=20, n_items=1_000, n_interactions=100, seed=5))
    words = [
        f"{t} {d}".lower().replace(".", "").split()
        for t, d in zip(col(ds.items, "title"), col(ds.items, "description"), strict=True)
    ]
    primary = [c[0] for c in ds.items.column("categories").to_pylist()]
    votes: dict[str, Counter[str]] = {}
    for w, c in zip(words[::2], primary[::2], strict=True):
        for word in w:
            votes.setdefault(word, Counter())[c] += 1
    hits = 0
    for w, c in zip(words[1::2], primary[1::2], strict=True):
        tally: Counter[str] = Counter()
        for word in w:
            counts = votes.get(word, Counter())
            total = sum(counts.values())
            for cat, k in counts.items():
                tally[cat] += k / total
        hits += bool(tally) and tally.most_common(1)[0][0] == c
    assert hits / len(primary[1::2]) > 0.85


# ---------------------------------------------------------------- the process


def test_all_event_types_with_valid_values(ds):
    types, value = col(ds.interactions, "type"), col(ds.interactions, "value")
    assert set(types) == {"view", "click", "like", "skip", "rating", "watch"}
    watch = value[types == "watch"]
    assert np.all((watch >= 0) & (watch <= 1)) and 0.2 < watch.mean() < 0.8
    ratings = value[types == "rating"]
    assert set(np.unique(ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    others = ~np.isin(types, ["watch", "rating"])
    assert ds.interactions.column("value").filter(pa.array(others)).null_count == others.sum()


def test_ids_request_and_position(ds):
    t = ds.interactions
    assert pc.count_distinct(t.column("event_id")).as_py() == t.num_rows
    types = col(t, "type")
    organic = pc.is_null(t.column("request_id")).to_numpy(zero_copy_only=False)
    assert np.array_equal(organic, pc.is_null(t.column("position")).to_numpy(zero_copy_only=False))
    assert organic[types == "view"].all() and not organic[np.isin(types, ["click", "skip"])].any()
    pos = col(t, "position")[~organic]
    assert pos.min() == 0 and pos.max() == CONFIG.slate_size - 1


def test_time_rules(ds):
    t = ds.interactions
    ts = col(t, "timestamp")
    assert np.all(np.diff(ts) >= 0)  # sorted by time
    assert ts.min() >= CONFIG.start_ms and ts.max() < CONFIG.end_ms
    published = dict(zip(col(ds.items, "item_id"), col(ds.items, "published_at"), strict=True))
    created = dict(zip(col(ds.users, "user_id"), col(ds.users, "created_at"), strict=True))
    assert all(ts[j] >= published[i] for j, i in enumerate(col(t, "item_id")))
    assert all(ts[j] >= created[u] for j, u in enumerate(col(t, "user_id")))
    assert (col(ds.items, "published_at") >= CONFIG.start_ms).sum() > 0
    # inside a served slate the click comes first, then its follow-ups; the impression precedes all
    served = t.filter(pc.is_valid(t.column("request_id")))
    shown_at = dict(zip(col(ds.impressions, "request_id"), col(ds.impressions, "timestamp"), strict=True))
    firsts: dict[tuple[str, int], str] = {}
    for r, p, ty, when in zip(
        col(served, "request_id"),
        col(served, "position"),
        col(served, "type"),
        col(served, "timestamp"),
        strict=True,
    ):
        firsts.setdefault((r, int(p)), ty)
        assert when >= shown_at[r]
    assert set(firsts.values()) == {"click", "skip"}


def test_position_bias_is_visible(ds):
    shown = np.bincount(np.concatenate(ds.impressions.column("positions").to_pylist()))
    clicks = ds.interactions.filter(pc.equal(ds.interactions.column("type"), "click"))
    ctr = np.bincount(col(clicks, "position"), minlength=len(shown)) / shown
    assert ctr[0] > ctr[1] > ctr[3] and ctr[0] > 3 * ctr[5:].mean()
    # slots are filled independently of affinity, so the CTR curve follows the examination curve
    expected = ds.truth.position_bias / ds.truth.position_bias[0]
    assert np.allclose(ctr / ctr[0], expected, atol=0.15)


def test_policies_hold(ds, inter):
    truth = ds.truth
    minors = np.isin(truth.user_age_bucket, [CONFIG.age_buckets.index(a) for a in CONFIG.minor_age_buckets])
    adult = truth.item_age_rating[inter.item_idx] == 2
    assert minors.any() and adult.any()
    assert not (minors[inter.user_idx] & adult).any()
    region = truth.item_region[inter.item_idx]
    assert np.all((region < 0) | (region == truth.user_country[inter.user_idx]))


# ---------------------------------------------------------------- ground truth


def test_feedback_follows_the_truth(ds, inter):
    aff = ds.truth.affinity_pairs(inter.user_idx, inter.item_idx, inter.timestamp)
    types = col(ds.interactions, "type")
    mean = {k: aff[types == k].mean() for k in ("skip", "click", "like")}
    assert mean["skip"] < mean["click"] < mean["like"]
    for kind in ("rating", "watch"):
        m = types == kind
        assert np.corrcoef(inter.value[m], aff[m])[0, 1] > 0.6


def test_affinity_and_top_k(ds):
    truth = ds.truth
    scores = truth.affinity([3, 7])
    assert scores.shape == (2, 200)
    assert np.allclose(scores[1], truth.affinity(7), atol=1e-5)
    assert np.allclose(truth.affinity_pairs([7, 7], [5, 9]), scores[1, [5, 9]], atol=1e-5)
    top = truth.top_k([3, 7], 5)
    assert np.array_equal(top[1], np.argsort(-scores[1], kind="stable")[:5])
    again = truth.top_k([3, 7], 5, exclude=[top[0][:2], np.array([], dtype=np.int64)])
    assert not set(again[0]) & set(top[0][:2]) and np.array_equal(again[1], top[1])
    matrix = sp.csr_matrix((np.ones(2), ([3, 3], top[0][:2])), shape=(truth.n_users, truth.n_items))
    assert np.array_equal(truth.top_k([3, 7], 5, exclude=matrix), again)
    early = truth.top_k(3, 300, t=CONFIG.start_ms)
    published_early = (truth.item_published_ms <= CONFIG.start_ms).sum()
    assert (early >= 0).sum() == published_early and early[published_early:].tolist() == [-1] * (
        300 - published_early
    )
    assert np.all(truth.click_probability(np.array([10.0, -10.0]), 0) <= 1.0)


def test_tastes_drift(ds):
    truth = ds.truth
    start, end = truth.user_factors(np.arange(300), CONFIG.start_ms), truth.user_factors(np.arange(300))
    assert np.allclose(start, truth.user_factors_start) and np.allclose(
        end, truth.user_factors_end, atol=1e-5
    )
    assert np.allclose(truth.user_categories(np.arange(5)).sum(axis=1), 1.0, atol=1e-5)
    still = generate(SyntheticConfig(n_users=30, n_items=40, n_interactions=300, drift=0.0)).truth
    assert np.allclose(still.user_factors_start, still.user_factors_end)
    assert not np.allclose(truth.user_factors_start, truth.user_factors_end)


def _time_split(inter: Interactions, fraction: float = 0.2):
    """First positive (user, item) events; each user's last ``fraction`` of them by time is test."""
    pos = inter.positive_mask()
    u, i, t = inter.user_idx[pos], inter.item_idx[pos], inter.timestamp[pos]
    order = np.lexsort((t, i, u))
    u, i, t = u[order], i[order], t[order]
    first = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1])]
    u, i, t = u[first], i[first], t[first]
    order = np.lexsort((t, u))
    u, i, t = u[order], i[order], t[order]
    counts = np.bincount(u, minlength=inter.n_users)
    rank = np.arange(len(u)) - np.repeat(np.cumsum(counts) - counts, counts)
    test = rank >= np.repeat(counts - np.floor(fraction * counts).astype(int), counts)
    train = sp.csr_matrix(
        (np.ones((~test).sum()), (u[~test], i[~test])), shape=(inter.n_users, inter.n_items)
    )
    users = np.unique(u[test])
    held = [i[test & (u == x)] for x in users]
    split_t = np.array([t[test & (u == x)].min() for x in users])
    return train, users, held, split_t


def _hit_rate(scores: np.ndarray, train: sp.csr_matrix, users: np.ndarray, held: list, k: int = 10) -> float:
    scores = np.where(train[users].toarray() > 0, -np.inf, scores)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(top[j]) & set(h)) / min(k, len(h)) for j, h in enumerate(held)]))


def test_ground_truth_is_learnable(ds, inter):
    """The oracle beats popularity by far, and a simple learned model (EASE) beats popularity too."""
    train, users, held, split_t = _time_split(inter)
    truth = ds.truth
    popularity = np.tile(np.asarray(train.sum(axis=0)).ravel(), (len(users), 1))
    oracle = np.stack([truth.affinity(u, None, t) for u, t in zip(users, split_t, strict=True)])
    oracle[truth.item_published_ms[None, :] > split_t[:, None]] = -np.inf
    gram = (train.T @ train).toarray()
    inv = np.linalg.inv(gram + 50.0 * np.eye(len(gram)))
    ease = -inv / np.diag(inv)
    np.fill_diagonal(ease, 0.0)
    hr_pop = _hit_rate(popularity, train, users, held)
    hr_oracle = _hit_rate(oracle, train, users, held)
    hr_ease = _hit_rate(train[users].toarray() @ ease, train, users, held)
    assert hr_oracle > 1.5 * hr_pop and hr_oracle > hr_pop + 0.1
    assert hr_ease > 1.3 * hr_pop


# ---------------------------------------------------------------- config, seeds, files


def test_same_seed_same_bytes_other_seed_differs():
    small = SyntheticConfig(n_users=50, n_items=40, n_interactions=1_000, seed=7)
    a, b, c = generate(small), generate(small), generate(SyntheticConfig(**{**small.to_dict(), "seed": 8}))
    for name in ("items", "users", "interactions", "impressions"):
        assert ipc_bytes(getattr(a, name)) == ipc_bytes(getattr(b, name))
    assert all(np.array_equal(v, b.truth.to_arrays()[k]) for k, v in a.truth.to_arrays().items())
    assert ipc_bytes(a.interactions) != ipc_bytes(c.interactions)
    more = generate(SyntheticConfig(**{**small.to_dict(), "n_interactions": 2_000}))
    assert ipc_bytes(more.items) == ipc_bytes(a.items)  # the catalogue does not depend on the log size


def test_write_and_read_back(ds, tmp_path):
    folder = write_dataset(ds, tmp_path / "syn")
    assert sorted(p.name for p in folder.iterdir()) == [
        "dataset.json", "impressions.parquet", "interactions.parquet", "items.parquet", "truth.npz",
        "users.parquet",
    ]  # fmt: skip
    back = read_dataset(folder)
    assert back.config == ds.config
    for name in ("items", "users", "interactions", "impressions"):
        assert getattr(back, name).equals(getattr(ds, name))
    with np.load(folder / "truth.npz", allow_pickle=False) as npz:
        assert np.array_equal(npz["item_factors"], ds.truth.item_factors)
    assert np.array_equal(back.truth.top_k([1, 2], 5), ds.truth.top_k([1, 2], 5))
    manifest = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(CorruptDataError):
        read_dataset(folder)
    with pytest.raises(NotFoundError):
        read_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "bad",
    [{"n_items": 0}, {"drift": 1.5}, {"start_ms": 10, "end_ms": 5}, {"source_mix": (1, 0, 0)},
     {"minor_age_buckets": ("9-12",)}],
)  # fmt: skip
def test_bad_config_raises(bad):
    with pytest.raises(ConfigError):
        SyntheticConfig(**bad)


def test_config_round_trips():
    cfg = SyntheticConfig(countries=["US", "FR"], seed=3)
    assert SyntheticConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError):
        SyntheticConfig.from_dict({"n_items": 5, "colour": "red"})
