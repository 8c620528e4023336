import math

import numpy as np
import pytest

from funnel.core.arrays import object_full
from funnel.core.errors import (
    ConfigError,
    FunnelError,
    NotFoundError,
    ValidationError,
    exit_code,
    http_status,
)
from funnel.core.registry import BackendRegistry
from funnel.core.schema import MAX_TIMESTAMP_MS, Impression, Interaction, Item, User

TS = 1_700_000_000_000


def test_error_taxonomy_maps_to_http_and_exit_codes():
    assert http_status(ValidationError("x", field="f")) == 422
    assert http_status(NotFoundError("x")) == 404
    assert http_status(ConfigError("x")) == 400
    assert http_status(RuntimeError("boom")) == 500
    assert exit_code(ValidationError("x")) == 2
    assert exit_code(FunnelError("x")) == 1


def test_validation_error_names_field_and_row():
    e = ValidationError("must be finite", field="value", row=7)
    assert str(e) == "value (row 7): must be finite"
    assert (e.field, e.row, e.reason) == ("value", 7, "must be finite")


def test_registry_lists_known_schemes_on_unknown_url():
    reg: BackendRegistry[str] = BackendRegistry("online store")
    reg.register("memory", lambda u: "mem")
    reg.register("redis", lambda u: f"redis {u.hostname}:{u.port}")
    assert reg.open("redis://127.0.0.1:6379/0") == "redis 127.0.0.1:6379"
    with pytest.raises(ConfigError, match="known schemes: memory, redis"):
        reg.open("postgres://x")


def _interaction(**over):
    base = {"user_id": "u", "item_id": "i", "type": "click", "timestamp": TS}
    base.update(over)
    return base


def test_interaction_round_trip():
    ev = Interaction.from_dict(_interaction(value=4, event_id="e1", position=2, context={"device": "tv"}))
    assert ev.value == 4.0 and ev.position == 2 and ev.context == {"device": "tv"}
    assert Interaction.from_dict(ev.to_dict()) == ev


@pytest.mark.parametrize(
    ("override", "field", "reason"),
    [
        ({"user_id": ""}, "user_id", "is required"),
        ({"item_id": None}, "item_id", "is required"),
        ({"type": "poke"}, "type", "unknown event type 'poke'"),
        ({"value": math.nan}, "value", "must be finite"),
        ({"value": math.inf}, "value", "must be finite"),
        ({"value": "5"}, "value", "must be a number"),
        ({"timestamp": 0}, "timestamp", "out of range"),
        ({"timestamp": MAX_TIMESTAMP_MS}, "timestamp", "out of range"),
        ({"timestamp": "yesterday"}, "timestamp", "epoch milliseconds"),
        ({"position": -1}, "position", "non-negative"),
    ],
)
def test_interaction_rejects_bad_fields_naming_field_and_row(override, field, reason):
    with pytest.raises(ValidationError) as info:
        Interaction.from_dict(_interaction(**override), row=5)
    assert info.value.field == field and info.value.row == 5
    assert reason in str(info.value) and str(info.value).startswith(f"{field} (row 5)")


def test_impression_validation():
    imp = Impression.from_dict({"request_id": "r", "user_id": "u", "item_ids": ["a", "b"], "timestamp": TS})
    assert imp.positions == (0, 1)
    assert Impression.from_dict(imp.to_dict()) == imp
    with pytest.raises(ValidationError, match="positions"):
        Impression.from_dict(
            {"request_id": "r", "user_id": "u", "item_ids": ["a"], "positions": [0, 1], "timestamp": TS}
        )
    with pytest.raises(ValidationError, match="propensities"):
        Impression.from_dict(
            {"request_id": "r", "user_id": "u", "item_ids": ["a"], "propensities": [0.0], "timestamp": TS}
        )


def test_item_and_user_validation():
    item = Item.from_dict({"item_id": 7, "categories": "Drama", "published_at": TS})
    assert item.item_id == "7" and item.categories == ("Drama",) and item.status == "listed"
    with pytest.raises(ValidationError, match="status"):
        Item.from_dict({"item_id": "a", "status": "gone"})
    with pytest.raises(ValidationError, match="attributes"):
        User.from_dict({"user_id": "u", "attributes": [1]})


def test_published_at_accepts_old_films_but_not_before_1800():
    old = Item.from_dict({"item_id": "0002844", "published_at": -1_798_761_600_000})  # 1913-01-01
    assert old.published_at == -1_798_761_600_000
    with pytest.raises(ValidationError, match="after 1800-01-01"):
        Item.from_dict({"item_id": "x", "published_at": -6_000_000_000_000})
    with pytest.raises(ValidationError, match="after 1970-01-01"):
        Interaction.from_dict(_interaction(timestamp=-1_798_761_600_000))


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_object_full_equals_np_full(n):
    got, want = object_full(n, "trending"), np.full(n, "trending", dtype=object)
    assert got.dtype == object and got.shape == (n,)
    assert got.tolist() == want.tolist()
    got[:1] = "other"  # a fresh array each call: writing one leaves the next untouched
    assert object_full(n, "trending").tolist() == want.tolist()


def test_paused_gc_comes_back_after_the_last_of_overlapping_pauses_and_on_errors():
    import gc
    import threading

    from funnel.core.gc_pause import paused_gc

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other_load():
        with paused_gc():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other_load)
    t.start()
    inside.wait(5)
    with paused_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's load is still running
    release.set()
    t.join(5)
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("a load that fails")
    assert gc.isenabled()
    gc.disable()  # off before the pause: stays off after it
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
