"""Weighted rank fusion: the merge on hand-checkable cases, and its weight learner."""

import numpy as np
import pytest
import scipy.sparse as sp

from funnel.core.errors import ValidationError
from funnel.retrieval.fusion import fuse, fuse_one, fusion_weights
from funnel.retrieval.report import _recall
from funnel.retrieval.sources.common import candidates


def cands(items, reason="r", scores=None, anchor=None):
    items = np.asarray(items)
    scores = np.linspace(1.0, 0.1, len(items)) if scores is None else np.asarray(scores)
    return candidates(items, scores, reason, -1 if anchor is None else np.asarray(anchor))


def truth(rows, m=40):
    dense = np.zeros((len(rows), m), dtype=np.float32)
    for u, items in enumerate(rows):
        dense[u, list(items)] = 1
    return sp.csr_matrix(dense)


def test_an_item_found_by_two_sources_beats_one_found_by_one():
    a, b = cands([1, 2, 3], "a"), cands([4, 3, 5], "b")
    m = fuse_one([a, b], ("a", "b"), np.array([1.0, 1.0]), total=3)
    assert m.items[0] == 3 and len(m) == 3
    row = 0
    assert m.ranks[row].tolist() == [2.0, 1.0] and m.reason[row] == "b"  # rank 1 in b is the larger term
    assert sorted(m.items.tolist()) == [1, 3, 4]  # then each source's top


def test_one_source_with_all_the_weight_reproduces_its_list():
    a, b = cands([7, 3, 9, 1], "a"), cands([3, 8], "b")
    m = fuse_one([a, b], ("a", "b"), np.array([0.0, 1.0]), total=5)
    assert m.items.tolist() == [3, 8]
    assert m.scores[0, 0] == pytest.approx(a.scores[1])  # a's score of 3 is still recorded
    m = fuse_one([a, b], ("a", "b"), np.array([2.0, 0.0]), total=3)
    assert m.items.tolist() == [7, 3, 9]


def test_weights_trade_sources_off_and_only_their_ratio_matters():
    a, b = cands(range(0, 10), "a"), cands(range(100, 110), "b")
    heavy = fuse_one([a, b], ("a", "b"), np.array([3.0, 1.0]), total=6)
    assert (heavy.source_names() == "a").sum() > 3
    same = fuse_one([a, b], ("a", "b"), np.array([30.0, 10.0]), total=6)
    assert heavy.items.tolist() == same.items.tolist()


def test_anchor_and_reason_come_from_the_strongest_source():
    a = cands([5], "because_you_watched", anchor=[42])
    b = cands([6, 5], "trending")
    m = fuse_one([a, b], ("item_knn", "trending"), np.array([1.0, 1.0]), total=5)
    row = m.items.tolist().index(5)
    assert m.reason[row] == "because_you_watched" and m.anchor[row] == 42 and m.source[row] == 0


def test_batch_fusion_with_per_user_weights_and_empties():
    per = {"a": [cands([1, 2]), cands([])], "b": [cands([3]), cands([])]}
    out = fuse(per, [{"a": 1, "b": 1}, {"a": 1}], total=5)
    assert len(out) == 2 and len(out[1]) == 0 and out[1].scores.shape == (0, 2)
    assert sorted(out[0].items.tolist()) == [1, 2, 3]


def test_bad_arguments():
    with pytest.raises(ValidationError):
        fuse_one([cands([1])], ("a", "b"), np.array([1.0, 1.0]))
    with pytest.raises(ValidationError):
        fuse_one([cands([1])], ("a",), np.array([1.0]), total=0)


def test_learned_weights_favour_the_source_that_finds_the_held_out_items():
    test = truth([[0, 1], [2, 3]])
    lists = {
        "good": [np.array([0, 1, 8, 9]), np.array([2, 3, 8, 9])],
        "bad": [np.array([10, 11, 4, 5]), np.array([10, 11, 6, 7])],
        "empty": [np.empty(0, np.int64), np.empty(0, np.int64)],
    }
    w = fusion_weights(lists, test, total=2)
    assert w["good"] == 1.0 and w["bad"] < 1.0 and w["empty"] == 0.0


def test_learned_fusion_is_never_below_the_best_single_source_on_its_data():
    rng = np.random.default_rng(3)
    m, n_users, k = 300, 60, 20
    rows = [rng.choice(m, 8, replace=False) for _ in range(n_users)]
    test = truth(rows, m)
    lists = {}
    for name, noise in (("strong", 0.5), ("weak", 0.15), ("random", 0.0)):
        per_user = []
        for r in rows:
            found = r[rng.random(len(r)) < noise]
            rest = rng.permutation(np.setdiff1d(np.arange(m), found))[: 40 - len(found)]
            per_user.append(rng.permutation(np.r_[found, rest]))
        lists[name] = per_user
    w = fusion_weights(lists, test, total=k)
    per = {name: [cands(x) for x in per_user] for name, per_user in lists.items()}
    fused = _recall([c.items for c in fuse(per, w, k)], test)
    best = max(_recall([x[:k] for x in per_user], test) for per_user in lists.values())
    assert fused >= best
