"""Experiments in config: arm overrides, the versioned experiments file, assignment per allocation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from funnel.core.errors import ConflictError, CorruptDataError, NotFoundError, ValidationError
from funnel.experiments.assignment import Arm, Experiment, assign
from funnel.experiments.overrides import ArmOverrides
from funnel.experiments.store import FILE_NAME, ExperimentRecord, ExperimentStore
from funnel.rerank.config import RerankConfig

ARMS = [{"name": "control"}, {"name": "explore", "overrides": {"rerank": {"explore_rate": 0.5}}}]


@pytest.fixture
def store(tmp_path):
    return ExperimentStore(tmp_path / FILE_NAME)


# ---- overrides -------------------------------------------------------------------------------


def test_overrides_apply_weights_on_top_of_the_fitted_and_rerank_settings():
    o = ArmOverrides.from_dict(
        {"head_weights": {"dislike": -3}, "rerank": {"mmr_lambda": 0.6, "max_per_creator": 4.0}}
    )
    assert o.weights({"engage": 1.0, "dislike": -1.0}) == {"engage": 1.0, "dislike": -3.0}
    config = o.rerank_config(RerankConfig())
    assert (config.mmr_lambda, config.max_per_creator, config.explore_rate) == (
        0.6,
        4,
        RerankConfig().explore_rate,
    )
    assert isinstance(config.max_per_creator, int)
    empty = ArmOverrides.from_dict({})
    assert empty.empty and empty.weights({"engage": 1.0}) is None and empty.rerank_config(config) is config


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"model_version": "../v2"}, "arms[1].overrides.model_version"),
        ({"model_version": 2}, "arms[1].overrides.model_version"),
        ({"ranker": {}}, "arms[1].overrides.ranker"),
        ({"head_weights": {"clicks": 1}}, "arms[1].overrides.head_weights.clicks"),
        ({"head_weights": {"like": float("inf")}}, "arms[1].overrides.head_weights.like"),
        ({"head_weights": {"like": True}}, "arms[1].overrides.head_weights.like"),
        ({"rerank": {"explore_rate": 1.5}}, "arms[1].overrides.rerank.explore_rate"),
        ({"rerank": {"explore_rate": None}}, "arms[1].overrides.rerank.explore_rate"),
        ({"rerank": {"max_per_creator": 2.5}}, "arms[1].overrides.rerank.max_per_creator"),
        ({"rerank": {"steps": ["seen"]}}, "arms[1].overrides.rerank.steps"),
        ({"rerank": "fast"}, "arms[1].overrides.rerank"),
    ],
)
def test_bad_overrides_name_the_field(raw, field):
    with pytest.raises(ValidationError) as err:
        ArmOverrides.from_dict(raw, "arms[1].overrides")
    assert err.value.field == field


def test_model_version_is_a_version_name_and_round_trips():
    # that the version exists, was not rejected and loads is checked at start (funnel.api.arm_models)
    over = ArmOverrides.from_dict({"model_version": "v2", "rerank": {"mmr_lambda": 0.5}})
    assert (over.model_version, over.empty, ArmOverrides.from_dict(over.to_dict())) == ("v2", False, over)
    assert not ArmOverrides.from_dict({"model_version": "v2"}).empty
    with pytest.raises(ValidationError, match="not a version name"):
        ArmOverrides.from_dict({"model_version": "a/b"})


# ---- the experiments file --------------------------------------------------------------------


def test_lifecycle_is_persisted_as_versioned_json(store):
    rec = store.create({"name": "exp-1", "arms": ARMS, "ramp": 10}, now_ms=1000)
    assert (rec.experiment.salt, rec.revision, rec.ramps, rec.running) == ("exp-1", 1, ((1000, 10.0),), True)
    store.ramp("exp-1", 50, now_ms=2000)
    stopped = store.stop("exp-1", now_ms=3000)
    assert (stopped.revision, stopped.stopped_ms, stopped.running) == (3, 3000, False)

    doc = json.loads(store.path.read_text())  # plain JSON, with its format and version
    assert (doc["format"], doc["version"]) == ("funnel.experiments", 1)
    (saved,) = doc["experiments"]
    assert saved["ramps"] == [[1000, 10.0], [2000, 50.0]] and saved["status"] == "stopped"
    assert saved["arms"][1]["overrides"] == {"rerank": {"explore_rate": 0.5}}
    assert ExperimentStore(store.path).load()["exp-1"] == stopped  # round trip
    assert ExperimentRecord.from_dict(stopped.to_dict()) == stopped


def test_conflicts_and_unknown_experiments(store):
    store.create({"name": "a", "arms": ARMS})
    with pytest.raises(ConflictError, match="'a' is running"):
        store.create({"name": "b", "arms": ARMS})
    with pytest.raises(ConflictError, match="exists"):
        store.create({"name": "a", "arms": ARMS})
    with pytest.raises(NotFoundError):
        store.ramp("nope", 10)
    with pytest.raises(ValidationError) as err:
        store.ramp("a", 120)
    assert err.value.field == "ramp"
    store.stop("a")
    for change in (lambda: store.stop("a"), lambda: store.ramp("a", 5)):
        with pytest.raises(ConflictError, match="stopped"):
            change()
    assert store.create({"name": "b", "arms": ARMS}).running  # one stopped, the next may run


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"name": "bad name", "arms": ARMS}, "name"),
        ({"name": "x", "arms": ARMS[:1]}, "arms"),
        ({"name": "x", "arms": ARMS, "status": "stopped"}, "status"),
        ({"name": "x", "arms": [ARMS[0], {"name": "b", "weight": 0}]}, "arms[1].weight"),
        ({"name": "x", "arms": [ARMS[0], {"name": "b", "overrides": {"model_version": ".hidden"}}]},
         "arms[1].overrides.model_version"),
        ({"name": "x", "arms": ARMS, "color": "red"}, "color"),
    ],
)  # fmt: skip
def test_bad_configs_name_the_field(store, config, field):
    with pytest.raises(ValidationError) as err:
        store.create(config)
    assert err.value.field == field
    assert not store.path.exists()  # nothing written


def test_an_unreadable_or_newer_file_is_refused(store):
    store.path.write_text("{not json")
    with pytest.raises(CorruptDataError):
        store.load()
    store.path.write_text(json.dumps({"format": "funnel.experiments", "version": 2, "experiments": []}))
    with pytest.raises(ConflictError, match="version 2"):
        store.load()


# ---- assignment --------------------------------------------------------------------------------


def test_assignment_is_stable_and_follows_the_allocation():
    exp = Experiment("e", "salt-7", (Arm("control", 3), Arm("b", 1)))
    users = [f"user-{i}" for i in range(10_000)]
    arms = np.array([assign(exp, u) for u in users])
    again = Experiment("e", "salt-7", exp.arms)  # another instance (another process) agrees
    assert arms.tolist() == [assign(again, u) for u in users]
    share_b = (arms == "b").mean()
    assert abs(share_b - 0.25) < 0.02, share_b  # 3:1 weights; sd of the share is 0.0043
    other = Experiment("e", "salt-8", exp.arms)
    other_salt = np.array([assign(other, u) for u in users])
    assert 0.3 < (other_salt != arms).mean() < 0.45  # an independent split: ~2·0.25·0.75 differ


def test_ramping_up_only_adds_users_and_keeps_their_arm():
    exp = Experiment("e", "s", (Arm("a"), Arm("b")), ramp=10)
    users = [f"u{i}" for i in range(5000)]
    at10 = {u: assign(exp, u) for u in users}
    at50 = {u: assign(exp.with_ramp(50), u) for u in users}
    inside10 = [u for u in users if at10[u] is not None]
    assert 0.08 < len(inside10) / len(users) < 0.12
    assert 0.47 < sum(a is not None for a in at50.values()) / len(users) < 0.53
    assert all(at50[u] == at10[u] for u in inside10)
