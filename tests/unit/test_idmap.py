import numpy as np
import pyarrow as pa
import pytest

from funnel.core.errors import CorruptDataError
from funnel.core.idmap import IdMap


def test_indices_are_dense_in_first_seen_order_and_stable():
    m = IdMap()
    assert m.add_many(["x", "y", "x"]).tolist() == [0, 1, 0]
    assert m.add_many(pa.array(["z", "y", "w"])).tolist() == [2, 1, 3]
    assert m.keys.to_pylist() == ["x", "y", "z", "w"]
    assert m.lookup(["w", "nope", "x"]).tolist() == [3, -1, 0]
    assert m.get("z") == 2 and m.get("nope") == -1
    assert m.keys_of(np.array([3, 0])) == ["w", "x"]
    assert "y" in m and "q" not in m
    assert m.add("q") == 4 and len(m) == 5


def test_lookup_returns_int32():
    m = IdMap(["a"])
    assert m.lookup(["a"]).dtype == np.int32
    assert m.add_many(["b"]).dtype == np.int32


def test_scalar_dict_stays_in_sync_after_batch_add():
    m = IdMap(["a"])
    assert m.get("a") == 0  # builds the dict
    m.add_many(["b", "c"])
    assert m.get("c") == 2


def test_nulls_are_rejected():
    with pytest.raises(ValueError):
        IdMap().add_many(pa.array(["a", None]))


def test_save_load_round_trip_and_append_only(tmp_path):
    m = IdMap(["0002844", "u1"])
    m.save(tmp_path / "ids.arrow")
    back = IdMap.load(tmp_path / "ids.arrow")
    assert back.keys.to_pylist() == ["0002844", "u1"]
    assert back.add("new") == 2
    back.save(tmp_path / "ids.arrow")
    assert IdMap.load(tmp_path / "ids.arrow").get("u1") == 1


def test_load_rejects_other_format_version(tmp_path):
    schema = pa.schema([("id", pa.string())], metadata={"format_version": "99"})
    with pa.OSFile(str(tmp_path / "bad.arrow"), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
        w.write_table(pa.table({"id": ["a"]}, schema=schema))
    with pytest.raises(CorruptDataError, match="format_version 99"):
        IdMap.load(tmp_path / "bad.arrow")
