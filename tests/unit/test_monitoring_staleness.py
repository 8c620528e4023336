"""Staleness alarms: a planted stall (the worker stops consuming) fires, a healthy consumer does not.

The consumer is the real :class:`~funnel.api.worker.Worker` (group ``worker``) over a real event
log: ``file://`` in the data directory, and a Redis stream (marker ``redis``). Wall time is
injected as ``now_s``; event timestamps are real epoch ms.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from funnel.api.worker import GROUP, Worker
from funnel.core.schema import Interaction
from funnel.engine import Engine
from funnel.monitoring.alarms import MonitorConfig
from funnel.monitoring.collector import MonitoringCollector
from funnel.monitoring.staleness import (
    consumer_alarm,
    consumer_status,
    model_age_h,
    model_alarm,
    read_heartbeat,
)
from funnel.training.registry import ModelRegistry

CONFIG = MonitorConfig(consumer_max_wait_s=600.0, model_max_age_h=24.0)


def engine_for(backend: str, tmp_path, request) -> Engine:
    url = None
    if backend == "redis":
        from tests.conftest import REDIS_URL

        url = f"{REDIS_URL}?stream={request.getfixturevalue('redis_namespace')}"
    eng = Engine(tmp_path / "data", event_log_url=url)
    eng.import_interactions(
        pa.table(
            {"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "a"], "timestamp": [1_700_000_000] * 3}
        )
    )
    return eng


def log_clicks(eng: Engine, n: int, at_s: float) -> None:
    eng.event_log.append([Interaction(f"u{k}", "a", "click", int(at_s * 1000)) for k in range(n)])


@pytest.mark.parametrize("backend", ["file", pytest.param("redis", marks=pytest.mark.redis)])
def test_planted_stall_fires_and_a_healthy_consumer_does_not(backend, tmp_path, request) -> None:
    eng = engine_for(backend, tmp_path, request)
    worker = Worker(eng, retrain_events=None, model="pop")
    assert worker.run_once() == "no model yet: trained"
    t0 = time.time()
    beat = read_heartbeat(eng.data_dir, GROUP)
    assert beat is not None and beat["committed"] == 0 and abs(beat["at"] - t0) < 60

    # healthy: events arrive, the worker consumes them, time passes without new events
    log_clicks(eng, 5, t0)
    worker.run_once()
    st = consumer_status(eng.event_log, GROUP, eng.data_dir, now_s=t0 + 3_600)
    assert (st.lag, st.waiting_s) == (0, 0.0)
    assert not consumer_alarm(st, CONFIG).firing

    # alive and catching up: events pending, but the heartbeat is fresh -> waiting is short
    log_clicks(eng, 3, t0 - 7_200)  # client timestamps two hours old (a backfill)
    st = consumer_status(
        eng.event_log, GROUP, eng.data_dir, now_s=read_heartbeat(eng.data_dir, GROUP)["at"] + 5
    )
    assert st.lag == 3 and st.waiting_s <= 5 and not consumer_alarm(st, CONFIG).firing
    worker.run_once()

    # planted stall: the worker stops; traffic keeps coming
    stopped = read_heartbeat(eng.data_dir, GROUP)["at"]
    log_clicks(eng, 4, stopped + 60)
    st = consumer_status(eng.event_log, GROUP, eng.data_dir, now_s=stopped + 60 + 540)
    assert st.lag == 4 and st.waiting_s == pytest.approx(540, abs=1) and not consumer_alarm(st, CONFIG).firing
    st = consumer_status(eng.event_log, GROUP, eng.data_dir, now_s=stopped + 60 + 660)
    alarm = consumer_alarm(st, CONFIG)
    assert alarm.firing and alarm.status == "FIRING" and "4 event(s) pending" in alarm.message

    # restarted: it consumes, the alarm clears
    worker.run_once()
    assert not consumer_alarm(consumer_status(eng.event_log, GROUP, eng.data_dir), CONFIG).firing
    eng.close()


def test_without_heartbeat_the_oldest_pending_event_dates_the_stall(tmp_path) -> None:
    eng = engine_for("file", tmp_path, None)
    log_clicks(eng, 2, 1_700_000_000)
    st = consumer_status(eng.event_log, GROUP, eng.data_dir, now_s=1_700_000_000 + 601)
    assert st.heartbeat_at is None and st.lag == 2 and consumer_alarm(st, CONFIG).firing
    eng.close()


def test_model_age_alarm(tmp_path) -> None:
    eng = engine_for("file", tmp_path, None)
    reg = ModelRegistry(eng.data_dir / "models")
    assert model_age_h(reg)[0] is None and model_alarm(reg, CONFIG).status == "no data"
    before = time.time()
    eng.train(model="pop")
    version, age = model_age_h(reg, before + 7_200)
    assert version == eng.model_version and age == pytest.approx(2.0, abs=0.02)
    assert not model_alarm(reg, CONFIG, before + 23 * 3_600).firing
    assert model_alarm(reg, CONFIG, before + 25 * 3_600).firing
    eng.close()


def test_metrics_collector_exports_the_stall(tmp_path) -> None:
    eng = engine_for("file", tmp_path, None)
    Worker(eng, retrain_events=None, model="pop").run_once()
    stopped = read_heartbeat(eng.data_dir, GROUP)["at"]
    log_clicks(eng, 4, stopped)
    clock = {"now": stopped + 10}
    reg = CollectorRegistry()
    reg.register(MonitoringCollector(eng, CONFIG, clock=lambda: clock["now"]))
    text = generate_latest(reg).decode()
    assert 'funnel_consumer_lag_events{group="worker"} 4.0' in text
    assert 'funnel_alarm{name="consumer_stalled"} 0.0' in text
    clock["now"] = stopped + 700
    text = generate_latest(reg).decode()
    assert 'funnel_alarm{name="consumer_stalled"} 1.0' in text
    assert 'funnel_consumer_waiting_seconds{group="worker"} 700.0' in text
    assert "funnel_model_age_seconds" in text
    eng.close()
