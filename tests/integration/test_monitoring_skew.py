"""Training–serving skew alarm: a planted skew (one feature scaled by 1.5 online) fires, unscaled does not.

A small synthetic stream (80 users, 120 items, ~10k events) goes into a real ``file://`` event
log; the streaming updater fills the in-memory online store up to each of 10 checkpoints, where
the :class:`~funnel.features.serving.FeatureServer` serves 5 users x 20 items and its
:class:`~funnel.features.serving.ServedFeatureLog` (sample rate 1) logs them: 1000 served rows.
The offline side compacts the same log and recomputes those rows point in time with DuckDB.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from funnel.data.synthetic import SyntheticConfig, event_stream, generate
from funnel.events.file_log import FileEventLog
from funnel.features.offline import OfflineStore, compact
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.serving import FeatureServer, ServedFeatureLog
from funnel.features.streaming import Catalog, StreamingUpdater
from funnel.features.windows import DAY
from funnel.monitoring.alarms import MonitorConfig
from funnel.monitoring.skew import compare, feature_skew, psi, read_served, served_rows, skew_alarm

T = 1_767_225_600_000
PLANTED = "user_positive_count_30d"  # the hardest to see: wide, user-level, 94% non-zero


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("skew")
    ds = generate(
        SyntheticConfig(n_users=80, n_items=120, n_interactions=5000, start_ms=T - 30 * DAY, seed=3)
    )
    events = event_stream(ds)
    log = FileEventLog(tmp / "events")
    log.append(events)
    catalog = Catalog.from_items(ds.items)
    updater = StreamingUpdater(log, MemoryOnlineStore(), catalog, batch_size=2_000)
    server = FeatureServer(
        updater.store, catalog, served_log=ServedFeatureLog(tmp / "served", sample_rate=1.0)
    )
    times = np.array([e.timestamp for e in events])
    rng = np.random.default_rng(0)
    items = ds.items.column("item_id").to_pylist()
    for j, k in enumerate(np.linspace(len(events) // 4, len(events) - 1, 10).astype(int)):
        t = int(times[k]) + 1
        until = int(np.searchsorted(times, t, side="left"))
        updater.run(until=until)
        users = sorted({events[x].user_id for x in range(max(0, until - 500), until)})
        for u in rng.choice(users, 5, replace=False):
            server.read(str(u), rng.choice(items, 20, replace=False).tolist(), t, request_id=f"r{j}-{u}")
    compact(log, tmp / "lake")
    log.close()
    return read_served(tmp / "served"), OfflineStore(tmp / "lake", ds.items)


def scaled(lines: list[dict], feature: str, factor: float) -> list[dict]:
    out = copy.deepcopy(lines)
    for line in out:
        if feature in line["items"]:
            line["items"][feature] = [v * factor for v in line["items"][feature]]
        else:
            line["user"][feature] *= factor
    return out


def test_unscaled_served_features_raise_no_alarm(served) -> None:
    lines, offline = served
    assert len(lines) == 50
    skews = feature_skew(lines, offline)
    assert len(skews) == 48  # every numeric feature (the recent-items list is left out)
    assert max(s.psi for s in skews) < 0.01 and max(s.mismatch_share for s in skews) == 0.0
    alarm = skew_alarm(skews, MonitorConfig())
    assert not alarm.firing and alarm.status == "ok"


def test_planted_skew_raises_the_alarm_and_names_the_feature(served) -> None:
    lines, offline = served
    skews = feature_skew(scaled(lines, PLANTED, 1.5), offline)
    worst = skews[0]
    assert worst.feature == PLANTED and worst.psi > 0.2
    assert worst.served_mean == pytest.approx(1.5 * worst.offline_mean)
    assert max(s.psi for s in skews[1:]) < 0.01
    alarm = skew_alarm(skews, MonitorConfig())
    assert alarm.firing and PLANTED in alarm.message


def test_any_mostly_nonzero_feature_scaled_by_1_5_crosses_the_threshold(served) -> None:
    lines, offline = served
    rows, values = served_rows(lines)
    recomputed = offline.get_historical_features(rows)
    checked = 0
    for name, on in values.items():
        if np.mean(on != 0) < 0.5:
            continue  # mostly zeros: scaling barely moves the distribution
        off = recomputed.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        assert psi(off, 1.5 * on) > 0.2, name
        checked += 1
    assert checked >= 20
    assert compare({PLANTED: values[PLANTED]}, recomputed)[0].psi == 0.0
