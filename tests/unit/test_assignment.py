"""Deterministic experiment assignment: stability, allocation shares, ramping, config validation."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from funnel.core.errors import ValidationError
from funnel.experiments.assignment import Arm, Experiment, assign, buckets

USERS = [f"user-{i}" for i in range(20_000)]
FEW = USERS[:5000]


def _experiment(ramp: float = 100.0, weights: tuple[float, ...] = (1.0, 1.0), salt: str = "s1") -> Experiment:
    arms = tuple(Arm(f"arm{i}", w) for i, w in enumerate(weights))
    return Experiment("exp", salt, arms, ramp=ramp)


def test_buckets_are_blake2b_of_salt_and_user_and_a_fixed_value() -> None:
    # A golden value: fails if the hash ever changes (e.g. to Python's per-process salted hash()).
    assert buckets("salt", "u1") == (0.9884248552976325, 0.47761024037947775)
    digest = hashlib.blake2b(b"salt\x00u1", digest_size=16).digest()
    assert buckets("salt", "u1")[1] == int.from_bytes(digest[8:], "big") / 2**64


def test_allocation_follows_the_weights() -> None:
    exp = _experiment(weights=(1.0, 1.0, 2.0))
    arms = [assign(exp, u) for u in USERS]
    counts = np.array([arms.count(name) for name in exp.arm_names])
    assert counts.sum() == len(USERS)
    expected = np.array(exp.weights) * len(USERS)
    sd = np.sqrt(expected * (1 - np.array(exp.weights)))
    assert np.all(np.abs(counts - expected) < 4 * sd), counts


def test_ramp_selects_that_share_of_users() -> None:
    inside = sum(assign(_experiment(ramp=25.0), u) is not None for u in USERS)
    assert abs(inside / len(USERS) - 0.25) < 4 * np.sqrt(0.25 * 0.75 / len(USERS))


def test_ramping_up_never_moves_a_user_to_another_arm() -> None:
    previous = [assign(_experiment(ramp=0.0), u) for u in FEW]
    assert set(previous) == {None}
    for ramp in (1.0, 5.0, 10.0, 25.0, 50.0, 80.0, 100.0):
        now = [assign(_experiment(ramp=ramp), u) for u in FEW]
        moved = sum(p is not None and p != n for p, n in zip(previous, now, strict=True))
        left = sum(p is not None and n is None for p, n in zip(previous, now, strict=True))
        assert moved == 0 and left == 0, ramp
        assert sum(n is not None for n in now) > sum(p is not None for p in previous)
        previous = now
    assert None not in previous


def test_stopped_experiment_assigns_nobody() -> None:
    exp = Experiment("exp", "s1", (Arm("a"), Arm("b")), status="stopped")
    assert all(assign(exp, u) is None for u in USERS[:100])


def test_a_new_salt_gives_an_independent_split() -> None:
    a = [assign(_experiment(salt="s1"), u) for u in FEW]
    b = [assign(_experiment(salt="s2"), u) for u in FEW]
    agree = np.mean([x == y for x, y in zip(a, b, strict=True)])
    assert abs(agree - 0.5) < 4 * np.sqrt(0.25 / len(FEW))


def test_from_dict_round_trips_and_reads_json() -> None:
    config = {
        "name": "ranker-v2", "salt": "x", "status": "stopped", "ramp": 12.5,
        "arms": [{"name": "control", "weight": 3}, {"name": "v2", "weight": 1, "overrides": {"w": [1, 2]}}],
    }  # fmt: skip
    exp = Experiment.from_dict(config)
    assert exp.arm_names == ("control", "v2") and exp.weights == (0.75, 0.25)
    assert exp.arms[1].overrides == {"w": [1, 2]} and exp.status == "stopped" and exp.ramp == 12.5
    assert Experiment.from_dict(exp.to_dict()) == exp
    assert Experiment.from_json(json.dumps(config)) == exp


def test_from_dict_defaults() -> None:
    exp = Experiment.from_dict({"name": "n", "salt": "s", "arms": [{"name": "a"}, {"name": "b"}]})
    assert exp.status == "started" and exp.ramp == 100.0 and exp.weights == (0.5, 0.5)


GOOD_ARMS = [{"name": "a"}, {"name": "b"}]


def _cfg(arms: list | str = GOOD_ARMS, **top: object) -> dict:
    return {"name": "n", "salt": "s", "arms": arms, **top}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"salt": "s", "arms": GOOD_ARMS}, "name"),
        (_cfg(name=""), "name"),
        ({"name": "n", "arms": GOOD_ARMS}, "salt"),
        (_cfg(colour=1), "colour"),
        (_cfg("ab"), "arms"),
        (_cfg([{"name": "a"}]), "arms"),
        (_cfg([{"name": "a"}, {"name": "a"}]), "arms[1].name"),
        (_cfg([{"name": "a"}, {"weight": 1}]), "arms[1].name"),
        (_cfg([{"name": "a"}, {"name": "b", "weight": 0}]), "arms[1].weight"),
        (_cfg([{"name": "a", "weight": "1"}, {"name": "b"}]), "arms[0].weight"),
        (_cfg([{"name": "a", "weight": np.inf}, {"name": "b"}]), "arms[0].weight"),
        (_cfg([{"name": "a", "overrides": 3}, {"name": "b"}]), "arms[0].overrides"),
        (_cfg([{"name": "a", "size": 3}, {"name": "b"}]), "arms[0].size"),
        (_cfg(status="paused"), "status"),
        (_cfg(ramp=101), "ramp"),
        (_cfg(ramp=-1), "ramp"),
        (_cfg(ramp=True), "ramp"),
    ],
)
def test_bad_config_names_the_field(config: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Experiment.from_dict(config)
    assert info.value.field == field


def test_bad_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        Experiment.from_json("{not json")
    assert info.value.field == "experiment"
