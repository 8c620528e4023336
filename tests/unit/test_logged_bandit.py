"""Off-policy evaluation from the event log against a synthetic logged bandit with a known truth.

Pages of three slots are logged through the API's write path (``RecommendationService.log_impression``
and ``log_interactions``). Slot ``p`` shows one item of its own pool of three, drawn independently
with probabilities ``MU`` (the logged propensities, exact: the slots are independent); a user of
group ``g`` clicks item ``j`` at position ``p`` with probability ``THETA[g][j] * BIAS[p]``. The
target policy shows, at every slot, pool item 2 to group 0 and pool item 0 to group 1, so its true
click rate over the logged slots is ``mean(THETA[g][target] * BIAS[p])`` — known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from funnel.api.service import RecommendationService
from funnel.engine import Engine
from funnel.experiments.logged_bandit import logged_slots
from funnel.experiments.ope import evaluate

POOLS = [["a0", "a1", "a2"], ["b0", "b1", "b2"], ["c0", "c1", "c2"]]
MU = np.array([0.6, 0.3, 0.1])
BIAS = np.array([1.0, 0.7, 0.5])
THETA = np.array([[0.10, 0.20, 0.40], [0.40, 0.20, 0.10]])
TARGET = [2, 0]  # group -> the pool index the target shows at every slot
T0 = 1_700_000_000_000


def log_world(svc: RecommendationService, seed: int, pages: int = 400) -> float:
    """Log ``pages`` pages and their clicks through ``svc``; returns the target's true click rate."""
    rng = np.random.default_rng(seed)
    truth = []
    for n in range(pages):
        user, group, rid = f"u{n % 50}", (n % 50) % 2, f"s{seed}-r{n}"
        picks = rng.choice(3, size=3, p=MU)
        items = [POOLS[p][j] for p, j in enumerate(picks)]
        svc.log_impression({
            "request_id": rid, "user_id": user, "items_shown": items, "positions": [0, 1, 2],
            "propensities": [float(MU[j]) for j in picks], "timestamp": T0 + 10 * n,
        })  # fmt: skip
        clicks = rng.random(3) < THETA[group][picks] * BIAS
        events = [
            {"event_id": f"{rid}-{p}", "user_id": user, "item_id": items[p], "action": "click",
             "request_id": rid, "timestamp": T0 + 10 * n + 1 + p}
            for p in np.flatnonzero(clicks).tolist()
        ]  # fmt: skip
        if events:
            svc.log_interactions(events)
        truth += [THETA[group][TARGET[group]] * BIAS[p] for p in range(3)]
    return float(np.mean(truth))


def target_of(slots):
    """The target's item at each logged slot (its group from the user id, its pool from the position)."""
    return np.array(
        [POOLS[p][TARGET[int(u[1:]) % 2]] for u, p in zip(slots.users, slots.positions, strict=True)]
    )


def estimate(log):
    slots = logged_slots(log)
    result = evaluate(
        slots.items, slots.positions, slots.propensities, slots.rewards, target_of(slots), slots.request_ids
    )
    return slots, result


def test_extraction_and_estimates_on_the_file_log(tmp_path):
    svc = RecommendationService(Engine(tmp_path / "d", served_feature_sample=0))
    truth = log_world(svc, seed=0, pages=300)
    # a page without propensities and a retry of a page are logged too: neither is a row
    svc.log_impression({"request_id": "plain", "user_id": "u1", "items_shown": ["a0"], "positions": [0]})
    svc.log_impression({"request_id": "s0-r0", "user_id": "u0", "items_shown": ["a0"], "positions": [0],
                        "propensities": [0.6]})  # fmt: skip
    slots, result = estimate(svc.engine.event_log)
    assert (len(slots), slots.impressions, slots.without_propensities, slots.duplicates) == (900, 300, 1, 1)
    assert set(np.unique(slots.propensities).tolist()) == set(MU.tolist())
    clicks = sum(1 for r in svc.engine.event_log.read(0, 10_000) if getattr(r.event, "type", None) == "click")
    assert slots.rewards.sum() == clicks  # every click joined to its slot by request id
    assert result.matched == int(np.sum(target_of(slots) == slots.items))
    for name in ("ips", "snips", "dr"):
        est = result.estimates[name]
        assert est.covers(truth), (name, est, truth)
    # the logged click rate is not the target's: the estimators do move away from it
    assert abs(result.logging_ctr - truth) > 3 * result.estimates["snips"].stderr


def test_intervals_cover_the_truth_across_seeds(tmp_path):
    covered = {"ips": 0, "snips": 0, "dr": 0}
    values = {"snips": [], "dr": []}
    truths = []
    seeds = range(30)
    for seed in seeds:
        svc = RecommendationService(
            Engine(tmp_path / f"d{seed}", event_log_url="memory://", served_feature_sample=0)
        )
        truth = log_world(svc, seed)
        _, result = estimate(svc.engine.event_log)
        truths.append(truth)
        for name in covered:
            covered[name] += result.estimates[name].covers(truth)
        for name in values:
            values[name].append(result.estimates[name].value)
    # 95% intervals: at least 26 of 30 cover (a binomial(30, 0.95) falls below 26 with p < 0.02)
    assert all(n >= 26 for n in covered.values()), covered
    # and the estimates centre on the truth: their mean over seeds is within 2 standard errors
    for name, v in values.items():
        err = np.mean(v) - np.mean(truths)
        assert abs(err) < 2 * np.std(v, ddof=1) / np.sqrt(len(v)), (name, err)


def test_the_target_never_matching_gives_no_snips_and_a_note(tmp_path):
    svc = RecommendationService(Engine(tmp_path / "d", event_log_url="memory://", served_feature_sample=0))
    log_world(svc, seed=1, pages=20)
    slots = logged_slots(svc.engine.event_log)
    target = np.array(["zz"] * len(slots), dtype=object)
    result = evaluate(
        slots.items, slots.positions, slots.propensities, slots.rewards, target, slots.request_ids
    )
    assert "snips" not in result.estimates and result.matched == 0 and result.estimates["ips"].value == 0.0
    assert any("never picks" in n for n in result.notes)


@pytest.mark.parametrize("since, expected", [(T0 + 10 * 15, 5), (None, 20)])
def test_since_and_max_impressions_cut_the_window(tmp_path, since, expected):
    svc = RecommendationService(Engine(tmp_path / "d", event_log_url="memory://", served_feature_sample=0))
    log_world(svc, seed=2, pages=20)
    assert logged_slots(svc.engine.event_log, since_ms=since).impressions == expected
    newest = logged_slots(svc.engine.event_log, since_ms=since, max_impressions=3)
    assert newest.impressions == 3 and newest.request_ids[-1] == "s2-r19" and len(newest) == 9
