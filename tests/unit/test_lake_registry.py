import pyarrow as pa
import pytest

from funnel.core.errors import NotFoundError
from funnel.core.schema import ITEMS
from funnel.data.lake import Lake
from funnel.training.manifest import ModelManifest
from funnel.training.registry import ModelRegistry


def _items(ids, titles):
    n = len(ids)
    return pa.table({"item_id": ids, "title": titles, "status": ["listed"] * n}).cast(
        pa.schema([ITEMS.field("item_id"), ITEMS.field("title"), ITEMS.field("status")])
    )


def test_uncommitted_write_leaves_nothing(tmp_path):
    lake = Lake(tmp_path)
    with lake.writer() as w:
        w.write("items", _items(["a"], ["A"]))
    assert lake.read("items").num_rows == 0
    assert not list(tmp_path.glob(".staging-*"))


def test_failed_import_is_rolled_back(tmp_path):
    lake = Lake(tmp_path)
    with pytest.raises(RuntimeError), lake.writer() as w:
        w.write("items", _items(["a"], ["A"]))
        raise RuntimeError("bad row halfway")
    assert lake.read("items").num_rows == 0


def test_items_keep_latest_version_per_id(tmp_path):
    lake = Lake(tmp_path)
    for ids, titles in ((["a", "b"], ["A1", "B1"]), (["b", "c"], ["B2", "C2"])):
        with lake.writer() as w:
            w.write("items", _items(ids, titles))
            w.commit()
    got = lake.read("items")
    assert dict(zip(got.column("item_id").to_pylist(), got.column("title").to_pylist(), strict=True)) == {
        "a": "A1",
        "b": "B2",
        "c": "C2",
    }
    assert got.schema == ITEMS
    # a projection is deduplicated by id all the same, even when the id is not asked for
    titles = lake.read("items", columns=["title"])
    assert titles.column_names == ["title"]
    assert sorted(titles.column("title").to_pylist()) == ["A1", "B2", "C2"]
    assert lake.read("items", columns=["title", "item_id"]).column_names == ["title", "item_id"]
    assert lake.read("users", columns=["user_id"]).column_names == ["user_id"]  # nothing written yet


def test_registry_promotes_atomically_and_lists_versions(tmp_path):
    reg = ModelRegistry(tmp_path)
    v1, v2 = "20260101-000000-aaaaaa", "20260102-000000-bbbbbb"
    for v in (v1, v2):
        (tmp_path / v).mkdir()
        ModelManifest(v, "pop").write(tmp_path / v)
    (tmp_path / "20260103-000000-cccccc").mkdir()  # incomplete: no manifest
    assert reg.versions() == [v1, v2]
    reg.promote(v1)
    reg.promote(v2)
    assert reg.live() == v2
    with pytest.raises(NotFoundError, match="known versions"):
        reg.promote("nope")
    assert reg.live() == v2
