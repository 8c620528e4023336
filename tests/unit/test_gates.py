"""Gate rules on small hand-checkable cases: config checks, guardrails, cold-start pages, reports."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from funnel.core.errors import NotTrainedError, ValidationError
from funnel.engine import Engine
from funnel.training.gate_eval import countries_of
from funnel.training.gates import Check, GateConfig, GateReport, _floor_check

T0 = 1_700_000_000


def test_config_rejects_bad_values_naming_the_field():
    for bad, field in (({"holdout": 0}, "holdout"), ({"ndcg_tolerance": -0.1}, "ndcg_tolerance"),
                       ({"min_window_users": 0}, "min_window_users"), ({"max_coverage_drop": True},
                       "max_coverage_drop"), ({"tolerance": 0.1}, "tolerance")):  # fmt: skip
        with pytest.raises(ValidationError) as err:
            GateConfig.from_dict(bad)
        assert err.value.field == field
    assert GateConfig(ndcg_tolerance=0.0).ndcg_floor(0.2) == 0.2
    assert GateConfig(ndcg_tolerance=0.05).ndcg_floor(0.2) == 0.19


def test_guardrail_floor_is_the_stricter_of_absolute_and_relative_to_live():
    assert _floor_check("coverage", 0.30, 0.1, None, 0.5).passed  # first model: the floor only
    assert not _floor_check("coverage", 0.05, 0.1, None, 0.5).passed
    c = _floor_check("coverage", 0.24, 0.1, 0.5, 0.5)  # live 0.5, at most 50% lower: 0.25
    assert not c.passed and c.threshold == 0.25 and "coverage 0.2400 below 0.2500" in c.detail
    assert _floor_check("coverage", 0.25, 0.1, 0.5, 0.5).passed


def test_countries_come_from_the_users_and_none_only_when_some_user_has_none():
    def users(*countries):
        attrs = [json.dumps({"country": c}) if c else "{}" for c in countries]
        return pa.table({"user_id": [f"u{n}" for n in range(len(attrs))], "attributes": attrs})

    assert countries_of(users("US", "DE", "US")) == ["DE", "US"]
    assert countries_of(users("US", None)) == [None, "US"]
    assert countries_of(users()) == [None]


def test_report_round_trips_and_names_every_failed_check():
    report = GateReport(False, [Check("ndcg", False, 0.1, 0.2, 0.21, "NDCG regresses"),
                                Check("coverage", True, 0.5, 0.1), Check("cold_users", False,
                                0.0, 1.0, None, "empty page in DE")], k=10)  # fmt: skip
    assert report.reason == "NDCG regresses; empty page in DE"
    assert GateReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_a_first_model_with_empty_cold_pages_is_rejected_and_nothing_serves(tmp_path):
    engine = Engine(tmp_path / "d")
    events = {"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"], "timestamp": [T0, T0 + 1, T0 + 2]}
    engine.import_interactions(pa.table(events))
    engine.import_items(pa.table({"item_id": ["a", "b"], "status": ["unlisted", "unlisted"]}))
    summary = engine.train(model="pop")
    assert summary.status == "rejected" and engine.model_version is None
    assert summary.gate["reason"] == "empty page for a first-time user in -"
    assert engine.registry.manifest(summary.version).reason == summary.gate["reason"]
    with pytest.raises(NotTrainedError):
        engine.recommend("u9")
    forced = engine.train(model="pop", force=True)
    assert forced.status == "live" and forced.gate["forced"] and engine.model_version == forced.version
    engine.close()


def test_the_worker_does_not_retrain_a_rejected_version_until_more_events_arrive(tmp_path):
    from funnel.api.worker import Worker

    engine = Engine(tmp_path / "d")
    engine.import_interactions(
        pa.table({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "timestamp": [T0, T0 + 1]})
    )
    worker = Worker(engine, retrain_events=2, model="pop")
    assert worker.run_once() == "no model yet: trained" and engine.model_version is not None
    old = [{"user_id": "u3", "item_id": "a", "type": "click", "timestamp": T0 * 1000 + n} for n in range(2)]
    engine.log_interactions(old)  # nothing newer than the live data: the gate has no window
    assert worker.run_once() == "retrained on 2 new event(s)"
    assert engine.registry.status(engine.registry.versions()[-1]) == "rejected"
    assert worker.run_once() == "consumed 0 event(s); 0 since the last training"  # no retry loop
    assert worker.trainings == 2
    engine.close()
