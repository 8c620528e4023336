"""The model registry: manifests, statuses, promotion history, rollback, atomic promotion."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from funnel.core.errors import ConflictError, CorruptDataError, NotFoundError, ValidationError
from funnel.training.manifest import FORMAT_VERSION, DataWindow, ModelManifest, config_hash
from funnel.training.registry import ModelRegistry


def _registry(tmp_path, *versions: str) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "models")
    for v in versions:
        (reg.root / v).mkdir()
        ModelManifest(v, "pop", data_window=DataWindow(0, 10, 3, 7)).write(reg.root / v)
    return reg


def test_manifest_round_trips_through_json_with_every_field(tmp_path):
    m = ModelManifest(
        "v1", "ease", status="rejected", reason="NDCG@10 0.1 regresses", parent_version="v0",
        data_window=DataWindow(1_700_000_000_000, 1_700_000_500_000, 1234, 56),
        config={"model": "auto", "k": 10, "params": {}, "ranking": {}}, n_users=3, n_items=4,
        metrics={"gate": {"passed": False}}, meta={"time_min_ms": 1},
    )  # fmt: skip
    m.write(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert raw["format_version"] == FORMAT_VERSION == 2 and raw["kind"] == "bundle"
    assert raw["config_hash"] == config_hash({"k": 10, "model": "auto", "params": {}, "ranking": {}})
    assert raw["config_hash"] != config_hash({"k": 20, "model": "auto", "params": {}, "ranking": {}})
    assert raw["log_offset"] == 56 and raw["data_window"]["n_interactions"] == 1234
    for key in ("feature_version", "package_version", "parent_version", "status", "reason", "created_at_ms"):
        assert key in raw
    assert ModelManifest.read(tmp_path) == m


def test_format_1_manifests_are_read_and_unknown_ones_refused(tmp_path):
    old = {"kind": "bundle", "format_version": 1, "version": "v0", "model": "pop", "log_offset": 9,
           "n_users": 2, "n_items": 3, "metrics": {}, "meta": {"time_min_ms": 5, "time_max_ms": 8,
                                                              "n_interactions": 4}}  # fmt: skip
    m = ModelManifest.from_dict(old)
    assert (m.status, m.parent_version, m.log_offset) == ("candidate", None, 9)
    assert (m.data_window.start_ms, m.data_window.end_ms, m.data_window.n_interactions) == (5, 8, 4)
    with pytest.raises(CorruptDataError, match="format_version"):
        ModelManifest.from_dict({**old, "format_version": 3})
    with pytest.raises(CorruptDataError, match="status"):
        ModelManifest.from_dict({**old, "format_version": 2, "status": "dead"})


def test_promote_retires_the_previous_version_and_rollback_walks_back(tmp_path):
    reg = _registry(tmp_path, "v1", "v2", "v3")
    assert reg.promote("v1") is None and reg.promote("v2") == "v1" and reg.promote("v3") == "v2"
    assert [reg.status(v) for v in ("v1", "v2", "v3")] == ["retired", "retired", "live"]
    assert reg.manifest("v2").reason == "replaced by v3"
    assert reg.previous_live() == "v2"
    assert reg.rollback() == "v2" and reg.live() == "v2"
    assert reg.manifest("v3").reason == "rolled back to v2"
    assert reg.rollback() == "v1" and reg.live() == "v1"
    with pytest.raises(ConflictError, match="nothing to roll back to"):
        reg.rollback()
    assert reg.live() == "v1"
    assert [(e["action"], e["version"], e["previous"]) for e in reg.history()] == [
        ("promote", "v1", None), ("promote", "v2", "v1"), ("promote", "v3", "v2"),
        ("rollback", "v2", "v3"), ("rollback", "v1", "v2"),
    ]  # fmt: skip
    assert reg.promote("v1") == "v1"  # already live: nothing happens
    assert len(reg.history()) == 5


def test_rejected_versions_need_force_and_bad_names_are_refused(tmp_path):
    reg = _registry(tmp_path, "v1", "v2")
    reg.promote("v1")
    reg.set_status("v2", "rejected", "NDCG@10 regresses")
    assert reg.versions() == ["v1", "v2"] and reg.status("v2") == "rejected"
    with pytest.raises(ValidationError, match=r"rejected by the gate \(NDCG@10 regresses\)") as err:
        reg.manual_promote("v2")
    assert err.value.field == "force" and reg.live() == "v1"
    assert reg.manual_promote("v2", force=True) == "v1" and reg.status("v2") == "live"
    assert reg.manifest("v2").reason is None
    with pytest.raises(NotFoundError, match="known versions: v1, v2"):
        reg.promote("v9")
    for bad in ("../v1", ".gate-v1", "a/b", ""):
        with pytest.raises(ValidationError, match="not a version name"):
            reg.path(bad)
    with pytest.raises(ValidationError):
        reg.set_status("v1", "live")  # only promote makes a version live


def test_a_failed_pointer_write_leaves_the_old_version_live(tmp_path, monkeypatch):
    reg = _registry(tmp_path, "v1", "v2")
    reg.promote("v1")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        reg.promote("v2")
    monkeypatch.undo()
    assert reg.live() == "v1" and reg.status("v2") == "candidate"
    assert [e["version"] for e in reg.history()] == ["v1"]
    assert not [p.name for p in reg.root.iterdir() if p.name.startswith(".LIVE")]  # no temp file left


def test_a_crash_after_the_pointer_keeps_rollback_right(tmp_path, monkeypatch):
    reg = _registry(tmp_path, "v1", "v2")
    reg.promote("v1")
    monkeypatch.setattr(ModelRegistry, "_append_history", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    with pytest.raises(OSError):
        reg.promote("v2")  # LIVE moved; the history and the manifests were not written
    monkeypatch.undo()
    assert reg.live() == "v2" and reg.status("v2") == "live"  # LIVE is the source of truth
    assert reg.live_stack() == ["v1", "v2"]
    assert reg.rollback() == "v1"


def test_readers_never_see_a_torn_pointer_during_promotions(tmp_path):
    reg = _registry(tmp_path, "v1", "v2")
    reg.promote("v1")
    seen: set[str | None] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(ModelRegistry(reg.root).live())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(30):
            reg.promote("v2" if n % 2 == 0 else "v1")
    finally:
        stop.set()
        reader.join()
    assert seen <= {"v1", "v2"} and len(seen) == 2


def test_version_names_sort_in_creation_order_within_one_second(tmp_path):
    reg = ModelRegistry(tmp_path)
    names = []
    for _ in range(5):
        names.append(reg.new_version())
        time.sleep(0.002)
    assert names == sorted(names) and len(set(names)) == 5
    assert all(name[8] == "-" and name[15] == "." for name in names)  # YYYYmmdd-HHMMSS.mmm-xxxxxx
