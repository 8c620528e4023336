"""The served-feature log's background writer, and how the serving settings reach it.

``ServedFeatureLog(background=True)`` (what serving uses): a sampled vector is queued and written
by a daemon thread (on its interval, on ``flush``, on ``close``); a request not sampled starts
nothing and writes nothing; the queue is bounded in rows (vectors beyond are dropped and counted);
concurrent writers, in threads or as separate logs on one folder (processes), leave whole lines;
a line cut short is skipped by the readers; a failing write is counted, never raised; old day
files are pruned and a day's file is capped; the newest lines are read from the files' ends. Then
the wiring: ``Engine`` (1% by default, ``<data_dir>/served_features/``), ``ServeConfig`` /
``FUNNEL_SERVED_FEATURE_SAMPLE`` / ``app_from_env``.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from funnel.api.server import ServeConfig, app_from_env, check_config, served_sample_from_env
from funnel.core.errors import ConfigError, ValidationError
from funnel.engine import Engine
from funnel.features.serving import SERVED_DIR, FeatureVectors, ServedFeatureLog
from funnel.monitoring.skew import _reverse_lines, read_served, served_rows

T = 1_767_225_600_000


def vector(user: str = "u1", n: int = 3, t: int = T) -> FeatureVectors:
    items = [f"i{k}" for k in range(n)]
    return FeatureVectors(
        user, items, t, {"user_click_count_1h": 2, "user_recent_items": ["i9"]},
        {"item_ctr_24h": np.linspace(0.0, 1.0, n), "item_clicks_1h": np.arange(n)},
    )  # fmt: skip


def test_background_writes_on_flush_in_the_same_format(tmp_path) -> None:
    log = ServedFeatureLog(tmp_path, 1.0, background=True, flush_interval_s=3600.0)
    assert log.maybe_log("r1", vector())
    assert log.pending == 1 and not list(tmp_path.glob("*.jsonl"))  # queued, not written
    assert log.flush(timeout=5.0)
    (line,) = read_served(tmp_path)
    assert line["request_id"] == "r1" and line["user_id"] == "u1" and line["t"] == T
    assert line["item_ids"] == ["i0", "i1", "i2"] and line["items"]["item_ctr_24h"] == [0.0, 0.5, 1.0]
    assert line["user"]["user_click_count_1h"] == 2 and "feature_version" in line
    assert (tmp_path / "served-2026-01-01.jsonl").exists()
    sync = ServedFeatureLog(tmp_path / "sync", 1.0)  # the synchronous mode writes the same line
    sync.maybe_log("r1", vector())
    assert sync.read() == [line]
    log.close()


def test_the_interval_flushes_without_being_asked(tmp_path) -> None:
    log = ServedFeatureLog(tmp_path, 1.0, background=True, flush_interval_s=0.05)
    log.maybe_log("r1", vector())
    for _ in range(200):
        if log.logged:
            break
        threading.Event().wait(0.01)
    assert log.logged == 1 and len(read_served(tmp_path)) == 1
    log.close()


def test_not_sampled_costs_nothing_but_a_hash(tmp_path) -> None:
    off = ServedFeatureLog(tmp_path, 0.0, background=True)
    assert not any(off.maybe_log(f"r{k}", vector()) for k in range(100))
    low = ServedFeatureLog(tmp_path, 0.01, background=True)
    skipped = [f"r{k}" for k in range(300) if not low.sampled(f"r{k}")]
    assert len(skipped) > 280
    assert not any(low.maybe_log(r, vector()) for r in skipped)
    assert off._thread is None and low._thread is None  # no writer started
    assert not tmp_path.exists() or not list(tmp_path.iterdir())
    assert not ServedFeatureLog(tmp_path, 1.0).maybe_log("r1", vector(n=0))  # nothing scored


def test_the_queue_is_bounded_in_rows(tmp_path) -> None:
    log = ServedFeatureLog(tmp_path, 1.0, background=True, flush_interval_s=3600.0, max_pending_rows=50)
    taken = [log.maybe_log(f"r{k}", vector(n=20)) for k in range(4)]
    assert taken == [True, True, False, False] and log.dropped == 2
    assert log.flush(timeout=5.0)
    assert log.maybe_log("r9", vector(n=20))  # room again once written
    log.close()
    assert [x["request_id"] for x in read_served(tmp_path)] == ["r0", "r1", "r9"]


def test_concurrent_writers_leave_whole_lines(tmp_path) -> None:
    logs = [ServedFeatureLog(tmp_path, 1.0, background=True, flush_interval_s=0.01) for _ in range(2)]

    def serve(worker: int) -> None:
        log = logs[worker % 2]  # two logs on one folder: two processes
        for k in range(150):
            log.maybe_log(f"w{worker}-{k}", vector(f"u{worker}", n=40))

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for log in logs:
        log.close()
    text = "".join(p.read_text() for p in tmp_path.glob("served-*.jsonl"))
    lines = [json.loads(x) for x in text.splitlines()]  # every line parses: none interleaved
    assert sorted(x["request_id"] for x in lines) == sorted(f"w{w}-{k}" for w in range(6) for k in range(150))
    assert sum(log.dropped for log in logs) == 0


def test_a_line_cut_short_is_skipped(tmp_path) -> None:
    ServedFeatureLog(tmp_path, 1.0).maybe_log("r1", vector())
    with open(tmp_path / "served-2026-01-01.jsonl", "a") as fh:
        fh.write('{"request_id": "r2", "user_id": "u')  # a write in progress
    assert [x["request_id"] for x in read_served(tmp_path)] == ["r1"]
    rows, values = served_rows(read_served(tmp_path))
    assert rows.num_rows == 3 and values["item_ctr_24h"].tolist() == [0.0, 0.5, 1.0]


def test_a_failing_write_is_counted_not_raised(tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    log = ServedFeatureLog(blocker, 1.0, background=True)
    assert log.maybe_log("r1", vector())
    assert log.flush(timeout=5.0)
    assert log.failed == 1 and log.logged == 0
    assert ServedFeatureLog(blocker, 1.0).maybe_log("r2", vector())  # synchronous: no raise either
    log.close()


def test_close_then_reuse(tmp_path) -> None:
    log = ServedFeatureLog(tmp_path, 1.0, background=True, flush_interval_s=3600.0)
    log.maybe_log("r1", vector())
    log.close()
    assert log._thread is None and len(read_served(tmp_path)) == 1
    log.close()  # idempotent
    assert log.maybe_log("r2", vector())
    log.close()
    assert [x["request_id"] for x in read_served(tmp_path)] == ["r1", "r2"]


def test_engine_wires_the_log_under_its_data_dir(tmp_path) -> None:
    engine = Engine(tmp_path / "d")
    assert engine.served_log is not None and engine.served_log.background
    assert engine.served_log.sample_rate == 0.01
    assert engine.served_log.folder == tmp_path / "d" / SERVED_DIR
    assert (engine.served_log.retain_days, engine.served_log.max_day_bytes) == (7, 1 << 30)
    assert Engine(tmp_path / "e", served_feature_sample=0.0).served_log is None
    with pytest.raises(ValidationError, match="served_feature_sample"):
        Engine(tmp_path / "f", served_feature_sample=1.5)


def test_the_serving_setting_reaches_the_engine(tmp_path, monkeypatch) -> None:
    config = ServeConfig(tmp_path, served_feature_sample=0.25)
    env = config.environment()
    assert env["FUNNEL_SERVED_FEATURE_SAMPLE"] == "0.25"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FUNNEL_WORKER", "0")
    engine = app_from_env().state.service.engine
    assert engine.served_log.sample_rate == 0.25
    assert engine.served_log.folder == tmp_path.resolve() / SERVED_DIR
    monkeypatch.delenv("FUNNEL_SERVED_FEATURE_SAMPLE")
    assert served_sample_from_env() == 0.01
    for bad in ("abc", "2", "-0.1", "nan"):
        monkeypatch.setenv("FUNNEL_SERVED_FEATURE_SAMPLE", bad)
        with pytest.raises(ConfigError, match="FUNNEL_SERVED_FEATURE_SAMPLE"):
            served_sample_from_env()
    with pytest.raises(ConfigError, match="served-feature-sample"):
        check_config(ServeConfig(tmp_path, served_feature_sample=1.5), "127.0.0.1")


def test_old_days_are_pruned_when_a_new_day_starts(tmp_path) -> None:
    for day in ("2025-12-01", "2025-12-24", "2025-12-25"):
        (tmp_path / f"served-{day}.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("kept")
    log = ServedFeatureLog(tmp_path, 1.0, retain_days=7)
    log.maybe_log("r1", vector(t=T))  # 2026-01-01: files before 2025-12-25 go
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt", "served-2025-12-25.jsonl", "served-2026-01-01.jsonl"
    ]  # fmt: skip
    ServedFeatureLog(tmp_path, 1.0, retain_days=None).maybe_log("r2", vector(t=T + 30 * 86_400_000))
    assert len(list(tmp_path.glob("served-*.jsonl"))) == 3


def test_read_served_takes_the_newest_lines_from_the_end(tmp_path) -> None:
    log = ServedFeatureLog(tmp_path, 1.0, retain_days=None)
    for k in range(300):  # three days, 100 lines each, 5 rows per line
        log.maybe_log(f"r{k:03d}", vector(n=5, t=T + (k // 100) * 86_400_000))
    everything = [x["request_id"] for x in read_served(tmp_path, max_lines=10_000)]
    assert everything == [f"r{k:03d}" for k in range(300)]
    assert [x["request_id"] for x in read_served(tmp_path, max_lines=150)] == everything[-150:]
    assert [x["request_id"] for x in read_served(tmp_path, max_rows=52)] == everything[-11:]  # 11 x 5 >= 52
    path = tmp_path / "served-2026-01-02.jsonl"
    lines = path.read_bytes().splitlines()
    for block in (7, 100, 1000, 1 << 20):  # lines cut by block boundaries are joined
        assert list(_reverse_lines(path, block)) == lines[::-1]


def test_a_day_file_stops_growing_at_its_cap(tmp_path) -> None:
    log = ServedFeatureLog(tmp_path, 1.0, max_day_bytes=1_000)
    size = len(ServedFeatureLog._line("r0", vector())[1])
    for k in range(10):
        log.maybe_log(f"r{k}", vector())
    kept = -(-1_000 // size)  # lines are appended while the file is under the cap
    assert log.logged == kept and log.dropped == 10 - kept
    assert log.full_days == {"served-2026-01-01.jsonl"}
    log.maybe_log("next-day", vector(t=T + 86_400_000))  # a new day, a new file
    assert log.logged == kept + 1
