"""The public Python API end to end on tiny, hand-checkable data."""

import pyarrow as pa
import pytest

from funnel.core.errors import NotFoundError, NotTrainedError, ValidationError
from funnel.engine import Engine

T0 = 1_700_000_000  # epoch seconds

# Two taste clusters: {a, b, c} (users u1..u4) and {x, y} (users u5, u6).
EVENTS = [
    ("u1", "a"), ("u1", "b"), ("u1", "c"),
    ("u2", "a"), ("u2", "b"), ("u2", "c"),
    ("u3", "a"), ("u3", "b"),
    ("u4", "a"), ("u4", "c"),
    ("u5", "x"), ("u5", "y"),
    ("u6", "x"),
]  # fmt: skip


def _interactions():
    return pa.table(
        {
            "user_id": [u for u, _ in EVENTS],
            "item_id": [i for _, i in EVENTS],
            "timestamp": [T0 + n for n in range(len(EVENTS))],
            "type": ["watch"] * len(EVENTS),
        }
    )


def _items(unlisted=()):
    ids = ["a", "b", "c", "x", "y", "z"]
    return pa.table(
        {
            "item_id": ids,
            "title": [f"Title {i.upper()}" for i in ids],
            "categories": ["drama|crime", "drama", "crime", "kids", "kids", "news"],
            "status": ["unlisted" if i in unlisted else "listed" for i in ids],
        }
    )


@pytest.fixture
def engine(tmp_path):
    eng = Engine(tmp_path / "d")
    eng.import_items(_items())
    assert eng.import_interactions(_interactions()) == len(EVENTS)
    yield eng
    eng.close()


def test_recommend_before_training_is_a_clear_error(tmp_path):
    eng = Engine(tmp_path)
    with pytest.raises(NotTrainedError, match="train"):
        eng.recommend("u1")
    eng.close()


@pytest.mark.parametrize("model", ["itemknn", "ease"])
def test_recommends_the_missing_cluster_item_with_a_reason(engine, model):
    engine.train(model=model)
    recs = engine.recommend("u3", k=3)
    assert recs[0].item_id == "c" and recs[0].title == "Title C"  # u3's cluster item not yet seen
    assert recs[0].reason.startswith("Because you watched Title ")
    assert recs[0].reason_code == "because_you_watched"
    assert {"a", "b"}.isdisjoint(r.item_id for r in recs)  # seen items excluded


def test_unlisted_items_are_never_returned(engine):
    engine.import_items(_items(unlisted=("c",)))
    engine.train(model="itemknn")
    for user in ("u1", "u3", "u5", "nobody"):
        assert "c" not in [r.item_id for r in engine.recommend(user, k=5)]
    assert "c" not in [r.item_id for r in engine.similar_items("a", k=5)]


def test_new_interaction_changes_recommendations_without_retraining(engine):
    engine.train(model="itemknn")
    version = engine.model_version
    assert engine.recommend("u6", k=1)[0].item_id == "y"
    engine.log_interactions([{"user_id": "u6", "item_id": "y", "type": "watch", "timestamp": T0 * 1000 + 99}])
    after = [r.item_id for r in engine.recommend("u6", k=3)]
    assert "y" not in after and engine.model_version == version


def test_cold_user_gets_popular_items(engine):
    engine.train(model="ease")
    recs = engine.recommend("someone-new", k=2)
    assert [r.item_id for r in recs] == ["a", "b"]  # a: 4 users, b and c: 3 (b first by index)
    assert all(r.reason == "Popular now" for r in recs)


def test_batch_and_similar_items(engine):
    engine.train(model="itemknn")
    batch = engine.recommend_batch(["u3", "u6", "ghost"], k=2)
    assert batch["u3"][0] == "c" and batch["u6"][0] == "y" and len(batch["ghost"]) == 2
    similar = engine.similar_items("x", k=1)
    assert similar[0].item_id == "y" and similar[0].reason == "Similar to Title X"
    with pytest.raises(NotFoundError):
        engine.similar_items("nope")


def test_auto_training_records_the_selection_and_survives_reopen(engine, tmp_path):
    summary = engine.train()
    assert summary.model in summary.selection and set(summary.selection) >= {"pop", "itemknn", "als"}
    engine.close()
    again = Engine(tmp_path / "d")
    assert again.model_version == summary.version
    assert again.recommend("u3", k=1)
    again.close()


def test_bad_rows_are_rejected_with_their_row_and_nothing_is_imported(tmp_path):
    eng = Engine(tmp_path)
    bad = pa.table(
        {
            "user_id": ["u1", "", "u3"],
            "item_id": ["a", "b", "c"],
            "timestamp": [T0, T0, T0],
            "type": ["click", "click", "poke"],
        }
    )
    with pytest.raises(ValidationError) as info:
        eng.import_interactions(bad)
    assert "user_id (row 2)" in str(info.value) and "type (row 3)" in str(info.value)
    assert eng.lake.read("interactions").num_rows == 0
    with pytest.raises(ValidationError, match="k"):
        eng.recommend("u1", k=0)
    eng.close()


def test_pandas_input_is_accepted(tmp_path):
    pd = pytest.importorskip("pandas")
    eng = Engine(tmp_path)
    df = pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["a", "a"], "timestamp": pd.to_datetime([T0, T0 + 1], unit="s")}
    )
    assert eng.import_interactions(df) == 2
    ts = eng.lake.read("interactions").column("timestamp")[0].as_py()
    assert int(ts.timestamp()) == T0
    eng.close()
