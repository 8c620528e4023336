"""The ANN indexes hold the listed catalogue: unlisted items are left out at fit and load, and new
unlisted rows are never made searchable (so index memory follows the listed catalogue)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from funnel.data.synthetic import SyntheticConfig, generate
from funnel.retrieval.sources import make_source, retrieval_data

UNLISTED = 7  # every 7th catalogue item is unlisted


@pytest.fixture(scope="module")
def world():
    ds = generate(SyntheticConfig(n_users=120, n_items=90, n_interactions=4000, seed=3))
    status = ["unlisted" if j % UNLISTED == 0 else "listed" for j in range(ds.items.num_rows)]
    items = ds.items.set_column(ds.items.schema.get_field_index("status"), "status", pa.array(status))
    return retrieval_data(ds.interactions, items, ds.users), items


def _ids(index) -> set[int]:  # type: ignore[no-untyped-def]
    found, _ = index.search(np.ones((1, index.dim), np.float32), len(index))
    return set(found[0][found[0] >= 0].tolist())


@pytest.mark.parametrize(
    "name, params",
    [("als", {"factors": 8, "iterations": 3}), ("content", {"embedder": "tfidf", "dim": 16}),
     ("two_tower", {"embedder": "tfidf", "epochs": 1, "dim": 16})],
)  # fmt: skip
def test_unlisted_items_are_left_out_at_fit_and_load(world, tmp_path, name, params):
    data, _ = world
    status = data.items.column("status").to_pylist()  # aligned to the item indices
    unlisted = {j for j, st in enumerate(status) if st == "unlisted"}
    assert len(unlisted) == -(-data.X.shape[1] // UNLISTED)
    src = make_source(name, **params).fit(data)
    held = _ids(src.index_)
    assert held and not held & unlisted
    assert len(src.index_) == len(held) <= data.X.shape[1] - len(unlisted)
    src.save(tmp_path / name)
    loaded = type(src).load(tmp_path / name)
    assert _ids(loaded.index_) == held  # the listed flags are saved with the source


@pytest.mark.parametrize("name", ["content", "two_tower"])
def test_new_rows_are_searchable_only_when_listed(world, name):
    data, items = world
    src = make_source(name, embedder="tfidf", dim=16, **({"epochs": 1} if name == "two_tower" else {})).fit(
        data
    )
    n = data.X.shape[1]
    rows = items.slice(1, 2)  # texts of listed items, under new indices; the second one unlisted
    rows = rows.set_column(rows.schema.get_field_index("status"), "status", pa.array(["listed", "unlisted"]))
    src.add_items(rows, np.array([n, n + 1]))
    held = _ids(src.index_)
    assert n in held and n + 1 not in held
