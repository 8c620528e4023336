"""The monitoring report renders: HTML with every section, PNGs that are real, non-blank images.

The data directory is a copy of the session's trained template (60 users, 80 items); on top of it
120 served pages over 48 hours are logged as impressions with their reason codes as sources, and
clicks on them (request id + item), and 30 served feature vectors go to the served-feature log.
The report runs while the engine still holds the ``file://`` log's writer lock (as a running
server does), and the worker never ran: the consumer alarm fires.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from funnel.core.schema import Impression, Interaction
from funnel.engine import Engine
from funnel.features.serving import ServedFeatureLog
from funnel.monitoring.report import build_report, collect
from funnel.monitoring.skew import SERVED_DIR

HOUR = 3_600_000
PAGES = 120


@pytest.fixture(scope="module")
def data_dir(api_data_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "data"
    shutil.copytree(api_data_template, path)
    eng = Engine(path)
    pipeline = eng.pipeline(catch_up=False)
    clock = pipeline.ranking.now_ms
    users = sorted(pipeline.bundle.users.keys_of(np.arange(len(pipeline.bundle.users))))
    rng = np.random.default_rng(0)
    ranked = pipeline.recommend(users, 8)  # one batch: each user's page, with reasons
    pages = {u: eng.to_recommendations(r, pipeline) for u, r in zip(users, ranked, strict=True)}
    events = []
    for k in range(PAGES):
        user, t, rid = users[k % len(users)], clock + k * (48 * HOUR // PAGES), f"req-{k}"
        ids = tuple(r.item_id for r in pages[user])
        sources = tuple(r.reason_code for r in pages[user])
        events.append(Impression(rid, user, ids, tuple(range(len(ids))), t, sources=sources))
        for pos in np.flatnonzero(rng.random(len(ids)) < 0.4 / (1 + np.arange(len(ids)))):
            events.append(Interaction(user, ids[pos], "click", t + 5_000, request_id=rid))
    eng.event_log.append(events)
    served = ServedFeatureLog(path / SERVED_DIR, sample_rate=1.0)
    items = pipeline.bundle.items.keys_of(np.arange(len(pipeline.bundle.items)))
    for j in range(30):
        fv = pipeline.ranking.features.read(users[j], rng.choice(items, 10, replace=False).tolist(), clock)
        served.maybe_log(f"s{j}", fv)
    yield path, eng  # the engine keeps the log's writer lock while the report runs
    eng.close()


def check_rendered(out) -> None:
    """index.html with every section; each PNG a valid, drawn (not blank) image."""
    page = (out / "index.html").read_text()
    for text in ("Alarms", "Quality", "Per-source contribution", "Staleness", "Index size", "skew"):
        assert text in page
    for png in ("quality.png", "sources.png", "skew.png", "index.png"):
        assert f'src="{png}"' in page
        with Image.open(out / png) as img:
            img.verify()
        with Image.open(out / png) as img:
            pixels = np.asarray(img.convert("L"), dtype=np.float64)
        assert min(pixels.shape) >= 300, png
        assert pixels.std() > 10 and len(np.unique(pixels)) > 50, png  # drawn, not blank


def test_report_renders(data_dir, tmp_path) -> None:
    path, _ = data_dir
    html, data = build_report(path, tmp_path / "report", window_h=6.0)
    assert html == tmp_path / "report" / "index.html"
    status = {a.name: a.status for a in data.alarms}
    # the worker never consumed the logged pages; the rest is healthy
    assert status == {
        "consumer_stalled": "FIRING",
        "model_stale": "ok",
        "index_coverage": "ok",
        "feature_skew": "ok",
    }
    check_rendered(tmp_path / "report")


def test_report_numbers(data_dir) -> None:
    path, eng = data_dir
    data = collect(path, window_h=6.0)
    logged = [r.event for r in eng.event_log.read(0, 10_000)]
    pages = [e for e in logged if isinstance(e, Impression)]
    clicks = [e for e in logged if isinstance(e, Interaction) and e.type == "click"]
    assert len(pages) == PAGES and data.total_clicks == len(clicks) and data.unattributed_clicks == 0
    last = data.series[-1]  # the last 6 h: 15 pages (one every 24 min)
    assert last.pages == 15 and last.slots == sum(len(p.item_ids) for p in pages[-15:])
    assert set(last.sources) <= {p for page in pages for p in page.sources}
    assert sum(s.clicks for s in last.sources.values()) == last.clicks
    assert data.consumer is not None and data.consumer.lag == len(logged)
    assert max(s.psi for s in data.skews) < 0.01  # served from the live store: no skew
