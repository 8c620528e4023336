"""Leakage: an event inside the label window changes labels only, never features or source scores.

The training rows are built twice — from the data as is, and with one label-window event added and
another removed — and every row the two share (same user, same item) must have bit-identical
features, source scores and ranks. Only the labels may differ. Run for the per-user time split
(the default) and the global one.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from funnel.core.idmap import IdMap
from funnel.core.interactions import Interactions
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.ranking.labels import LabelConfig, label_mask
from funnel.ranking.model import RankingPipeline
from funnel.retrieval.sources.common import retrieval_data

DS = generate(SyntheticConfig(n_users=200, n_items=150, n_interactions=6000, seed=7))
SOURCES = {"item_knn": {}, "trending": {}, "als": {"factors": 8, "iterations": 4}}


def _data(table: pa.Table):
    base = Interactions.from_table(DS.interactions)  # fixes the index space for both runs
    inter = Interactions.from_table(table, IdMap(base.users.keys), IdMap(base.items.keys))
    return retrieval_data(inter, DS.items, DS.users)


def _rows(table, split, tmp_path, name):
    pipe = RankingPipeline(SOURCES, total=60, labels={"split": split}, negatives=20, max_label_users=10_000)
    rows, _ = pipe.training_rows(_data(table), tmp_path / name)
    keys = np.repeat(np.array(rows.user_ids, dtype=object), rows.group_sizes) + ":" + rows.items.astype(str)
    return rows, {k: i for i, k in enumerate(keys.tolist())}


@pytest.mark.slow
@pytest.mark.parametrize("split", ["user", "global"])
def test_label_window_events_change_labels_only(split, tmp_path):
    table = DS.interactions
    data = _data(table)
    is_label, _ = label_mask(data.interactions, LabelConfig(split=split))
    inter = data.interactions
    # remove: a positive label event that is not its user's first or last event
    ts, users = inter.timestamp, inter.user_idx
    last = np.zeros(inter.n_users, np.int64)
    np.maximum.at(last, users, ts)
    inside = np.flatnonzero(is_label & (ts < last[users]) & inter.positive_mask())
    drop = int(inside[0])
    # add: a click by another label-window user, strictly inside their window, on an unseen item
    other = int(inside[-1])
    u = inter.users.key(int(users[other]))
    seen = set(pc.filter(table.column("item_id"), pc.equal(table.column("user_id"), u)).to_pylist())
    new_item = next(i for i in inter.items.keys.to_pylist() if i not in seen)
    added = pa.table(
        {
            "user_id": [u],
            "item_id": [new_item],
            "timestamp": pa.array([int(ts[other]) + 1]).cast(pa.timestamp("ms", "UTC")),
            "type": ["click"],
        }
    )
    changed = pa.concat_tables(
        [
            table.filter(pa.array(np.arange(table.num_rows) != drop)),
            added.cast(table.select(added.column_names).schema),
        ],
        promote_options="default",
    )
    base, base_at = _rows(table, split, tmp_path, "a")
    alt, alt_at = _rows(changed, split, tmp_path, "b")
    common = sorted(set(base_at) & set(alt_at))
    assert len(common) > 0.9 * len(base_at)
    a = base.X[[base_at[k] for k in common]]
    b = alt.X[[alt_at[k] for k in common]]
    np.testing.assert_array_equal(a, b)  # NaN == NaN here: missing source scores must match too
    labels_differ = any(
        (base.labels[h][[base_at[k] for k in common]] != alt.labels[h][[alt_at[k] for k in common]]).any()
        for h in base.labels
    )
    assert labels_differ or set(base_at) != set(alt_at)
