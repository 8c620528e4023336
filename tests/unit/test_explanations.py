import numpy as np
import scipy.sparse as sp

from funnel.rerank.explanations import ItemAnchors


def test_anchor_is_the_most_similar_history_item():
    # items 0 and 1 always co-occur; item 2 shares one user with item 3; item 4 is isolated
    X = sp.csr_matrix(
        np.array(
            [
                [1, 1, 0, 0, 0],
                [1, 1, 1, 1, 0],
                [0, 0, 1, 0, 0],
                [0, 0, 0, 0, 1],
            ],
            dtype=np.float32,
        )
    )
    anchors, sims = ItemAnchors(X).anchor(np.array([0, 2]), np.array([1, 3, 4]))
    # cos(0,1)=1; cos(2,3)=1/sqrt(2)≈0.707 > cos(0,3)=1/sqrt(2)... tie broken by first history item
    assert anchors[0] == 0 and np.isclose(sims[0], 1.0)
    assert anchors[1] in (0, 2) and np.isclose(sims[1], 1 / np.sqrt(2))
    assert anchors[2] == -1 and sims[2] == 0.0


def test_no_history_means_no_anchor():
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    anchors, _ = ItemAnchors(X).anchor(np.array([], dtype=np.int64), np.array([0, 1]))
    assert anchors.tolist() == [-1, -1]
