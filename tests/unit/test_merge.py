import numpy as np
import pytest

from funnel.core.errors import ValidationError
from funnel.retrieval.merge import merge, merge_one
from funnel.retrieval.sources.common import candidates


def cands(items, reason="r", scores=None):
    items = np.asarray(items)
    scores = np.linspace(1.0, 0.1, len(items)) if scores is None else np.asarray(scores)
    return candidates(items, scores, reason)


def test_quotas_are_respected_when_they_sum_to_total():
    a, b = cands(range(0, 10), "a"), cands(range(100, 110), "b")
    m = merge_one([a, b], ("a", "b"), np.array([3, 2]), total=5)
    assert sorted(m.items.tolist()) == [0, 1, 2, 100, 101]
    assert (m.source_names() == "a").sum() == 3


def test_overlap_frees_slots_for_the_next_best_and_keeps_every_score_and_rank():
    a = cands([1, 2, 3, 4], "a", [4.0, 3.0, 2.0, 1.0])
    b = cands([2, 9, 8], "b", [30.0, 20.0, 10.0])
    m = merge_one([a, b], ("a", "b"), np.array([2, 2]), total=4)
    assert len(m) == 4 and len(set(m.items.tolist())) == 4
    row = m.items.tolist().index(2)
    assert m.scores[row].tolist() == [3.0, 30.0] and m.ranks[row].tolist() == [1.0, 0.0]
    assert m.reason[row] == "b"  # rank 0 in b beats rank 1 in a
    only_a = m.items.tolist().index(1)
    assert np.isnan(m.scores[only_a, 1]) and np.isnan(m.ranks[only_a, 1])
    assert m.scores.shape == m.ranks.shape == (4, 2) and m.scores.dtype == np.float32


def test_total_caps_and_sources_are_cut_in_proportion():
    a, b = cands(range(100), "a"), cands(range(1000, 1100), "b")
    m = merge_one([a, b], ("a", "b"), np.array([60, 20]), total=40)
    assert len(m) == 40
    assert (m.source_names() == "a").sum() == 30


def test_zero_quota_source_is_a_feature_only():
    a, b = cands([1, 2, 3], "a"), cands([3, 7], "b")
    m = merge_one([a, b], ("a", "b"), np.array([5, 0]), total=10)
    assert sorted(m.items.tolist()) == [1, 2, 3]
    assert not np.isnan(m.scores[m.items.tolist().index(3), 1])


def test_strongest_source_carries_reason_and_anchor():
    a = candidates(np.array([5]), np.array([1.0]), "because_you_watched", np.array([42]))
    b = candidates(np.array([6, 5]), np.array([9.0, 8.0]), "trending")
    m = merge_one([a, b], ("item_knn", "trending"), np.array([1, 1]), total=5)
    row = m.items.tolist().index(5)
    assert m.reason[row] == "because_you_watched" and m.anchor[row] == 42 and m.source[row] == 0


def test_batch_merge_with_per_user_quotas_and_empties():
    per = {"a": [cands([1, 2]), cands([])], "b": [cands([3]), cands([])]}
    out = merge(per, [{"a": 1, "b": 1}, {"a": 1}], total=5)
    assert len(out) == 2 and len(out[1]) == 0 and out[1].scores.shape == (0, 2)
    assert out[0].sources == ("a", "b")


def test_large_merge_is_deduplicated_and_ordered_by_priority():
    rng = np.random.default_rng(0)
    lists = [cands(rng.permutation(5000)[:1500]) for _ in range(5)]
    m = merge_one(lists, tuple("abcde"), np.array([400, 300, 150, 100, 50]), total=1000)
    assert len(m) == 1000 and len(np.unique(m.items)) == 1000
    prio = np.nanmin(m.ranks / np.array([400, 300, 150, 100, 50]), axis=1)
    assert np.all(np.diff(prio) >= 0)


def reference_merge(lists, quotas, total):
    """The merge rule written out: each item's best (rank / quota, source), ascending, cut at total."""
    best = {}
    for s, c in enumerate(lists):
        for r, item in enumerate(c.items.tolist()):
            if quotas[s] > 0 and (item not in best or (r / quotas[s], s) < best[item]):
                best[item] = (r / quotas[s], s)
    kept = sorted(best, key=best.__getitem__)[:total]
    return kept, [best[i][1] for i in kept]


@pytest.mark.parametrize("seed", range(20))
def test_merge_matches_the_rule_written_out_with_ties_and_zero_quotas(seed):
    rng = np.random.default_rng(seed)
    n_src = int(rng.integers(1, 5))
    lists = [cands(rng.permutation(30)[: rng.integers(0, 20)]) for _ in range(n_src)]
    quotas = rng.choice([0, 2, 4, 4], size=n_src)  # equal quotas: equal priorities across sources
    total = int(rng.integers(1, 40))
    m = merge_one(lists, tuple("abcd")[:n_src], quotas, total=total)
    items, sources = reference_merge(lists, quotas, total)
    assert m.items.tolist() == items and m.source.tolist() == sources


def test_bad_arguments():
    with pytest.raises(ValidationError):
        merge_one([cands([1])], ("a", "b"), np.array([1, 1]))
    with pytest.raises(ValidationError):
        merge({"a": [cands([1])], "b": []}, {"a": 1})
