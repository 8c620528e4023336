"""Feature values for one user and N candidate items from window sums: the shared derivation.

:func:`compute` turns the user's window sums, recent items, the candidates' item-counter matrix
and their catalogue facts (:class:`ItemMeta`) into every feature of
:data:`~funnel.features.definitions.FEATURES`. Serving and the offline (DuckDB) path both call
it, so the derivation itself can never skew. Per-item features are NumPy arrays: item counters
are columns of the matrix, user x category / creator crosses one gather of the user's sums by
sub-entity code (categories and creators coded once per catalogue, see
:meth:`~funnel.features.streaming.Catalog.item_meta`).

Example:
    >>> meta = ItemMeta.from_lists(np.array([0.0, np.nan]), [("news", "sports"), ()], ["c1", None])
    >>> meta.category_codes.tolist(), meta.creator_codes.tolist()
    ([[0, 1], [-1, -1]], [0, -1])
    >>> sums = {("cat", "n.positive", "sports", "30d"): 3.0, ("act", "n.positive", "", "30d"): 4.0}
    >>> user, items = compute(DAY, sums, {}, ["i1", "i2"], np.zeros((2, len(item_columns()))), meta)
    >>> items["ux_category_count_30d"].tolist(), items["ux_category_affinity_30d"].tolist()
    ([3, 0], [0.75, 0.0])
    >>> items["item_age_days"].tolist(), user["user_positive_count_30d"]
    ([1.0, -1.0], 4)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat

import numpy as np

from funnel.features.definitions import FEATURES, FeatureDef, item_columns, last_n
from funnel.features.windows import DAY


@dataclass(frozen=True)
class ItemMeta:
    """Catalogue facts of candidate items as arrays, sub-entities as codes into vocabularies.

    ``published_at[i]`` ms (NaN unknown); ``category_codes[i]`` item ``i``'s categories as codes
    into ``category_vocab``, padded with -1 (shape ``(n, k)``, ``k >= 1``); ``creator_codes[i]``
    its creator's code in ``creator_vocab`` (-1 none). Build it with :meth:`from_lists`, or
    from a :class:`~funnel.features.streaming.Catalog` (vocabularies built once).
    """

    published_at: np.ndarray
    category_codes: np.ndarray
    creator_codes: np.ndarray
    category_vocab: Mapping[str, int]
    creator_vocab: Mapping[str, int]

    @classmethod
    def from_lists(
        cls, published_at: np.ndarray, categories: Sequence[Sequence[str]], creators: Sequence[str | None]
    ) -> ItemMeta:
        """From per-item category tuples and creators (vocabularies of these items only)."""
        cat_vocab = {c: k for k, c in enumerate(dict.fromkeys(chain.from_iterable(categories)))}
        creator_vocab = {c: k for k, c in enumerate(dict.fromkeys(filter(None, creators)))}
        cat_codes, cre_codes = code_lists(categories, creators, cat_vocab, creator_vocab)
        return cls(np.asarray(published_at, dtype=np.float64), cat_codes, cre_codes, cat_vocab, creator_vocab)


def code_lists(
    categories: Sequence[Sequence[str]],
    creators: Sequence[str | None],
    category_vocab: Mapping[str, int],
    creator_vocab: Mapping[str, int],
) -> tuple[np.ndarray, np.ndarray]:
    """``(category_codes, creator_codes)`` of :class:`ItemMeta` (-1 pads; vocabularies must hold all)."""
    n = len(categories)
    lens = np.fromiter(map(len, categories), np.intp, n)
    width = max(1, int(lens.max()) if n else 1)
    cat_codes = np.full((n, width), -1, dtype=np.intp)
    flat = list(chain.from_iterable(categories))
    rows = np.repeat(np.arange(n), lens)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
    cat_codes[rows, cols] = np.fromiter(map(category_vocab.__getitem__, flat), np.intp, len(flat))
    creator_vocab = {**creator_vocab, None: -1, "": -1}
    cre_codes = np.fromiter(map(creator_vocab.__getitem__, creators), np.intp, n)
    return cat_codes, cre_codes


_DENSE_VOCAB = 4096
"""Vocabularies up to this size get a table row per code; larger ones a row per code the user has."""


def _crosses(
    subs: Mapping[tuple[str, str, str], Mapping[str, float]],
    keys: Sequence[tuple[str, str, str]],
    vocab: Mapping[str, int],
    codes: np.ndarray,
) -> np.ndarray:
    """``out[i, j]``: the max of 0 and the user's ``keys[j]`` sums of item ``i``'s sub-entities.

    One table of the user's sums (a row per sub-entity, a column per key, a last row of zeros
    that unknown codes and code -1 read), gathered by ``codes`` (``(n,)`` or ``(n, k)``). A small
    vocabulary has a row per code; a large one (creators: ~100k at 1M items) a row per code the
    user has, found by a binary search: a table the vocabulary's size, zeroed and clipped on every
    request, cost ~0.19 ms where the user's few codes cost ~0.05.
    """
    found = []
    for j, key in enumerate(keys):
        vals = subs.get(key)
        if vals:
            at = np.fromiter(map(vocab.get, vals, repeat(-1)), np.intp, len(vals))
            found.append((at, j, np.maximum(np.fromiter(vals.values(), np.float64, len(vals)), 0.0)))
    if len(vocab) <= _DENSE_VOCAB:
        table = np.zeros((len(vocab) + 1, len(keys)))
        for at, j, values in found:
            table[at, j] = values
        table[-1] = 0.0  # sub-entities outside the vocabulary (no candidate has them) landed there
        rows = codes
    else:
        held = np.unique(np.concatenate([at for at, _, _ in found])) if found else np.empty(0, np.intp)
        held = held[held >= 0]
        table = np.zeros((len(held) + 1, len(keys)))
        for at, j, values in found:
            known = at >= 0
            table[np.searchsorted(held, at[known]), j] = values[known]
        pos = np.searchsorted(held, codes)  # a code the user lacks reads the last row (zeros)
        hit = held[np.minimum(pos, len(held) - 1)] == codes if len(held) else False
        rows = np.where(hit, pos, len(held))
    if codes.ndim == 1:
        return table[rows]
    out = table[rows[:, 0]]
    for k in range(1, codes.shape[1]):  # a few columns: faster than max(axis=1) of a 3-D gather
        np.maximum(out, table[rows[:, k]], out=out)
    return out


def compute(
    t: int,
    user_sums: Mapping[tuple[str, str, str, str], float],
    recent: Mapping[str, int],
    item_ids: Sequence[str],
    item_matrix: np.ndarray,
    meta: ItemMeta,
    defs: Sequence[FeatureDef] = FEATURES,
) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """Every feature at ``t`` for one user and ``len(item_ids)`` candidate items.

    ``user_sums`` maps ``(group, counter, sub, window)`` to the user's window sums (every group
    of the user: activity, categories, creators, items); ``item_matrix[i, j]`` is item ``i``'s
    window sum of :func:`item_columns` ``[j]``. Returns
    ``(user values, per-item arrays)``; user x item crosses are per-item arrays: the max of 0 and
    the user's sums of the item's sub-entities (gathered by code, see :class:`ItemMeta`).
    """
    n = len(item_ids)
    plan = _plan(defs)
    steps, cross_keys, sub_groups = plan.steps, plan.cross, plan.sub_groups
    subs: dict[tuple[str, str, str], dict[str, float]] = {}  # the sub-entity sums, by counter
    for (g0, c0, s0, w0), x in user_sums.items():
        if g0 in sub_groups:
            subs.setdefault((g0, c0, w0), {})[s0] = x
    columns = item_matrix.T.astype(np.int64, order="C")  # one contiguous int row per item column
    coded = {"user_category": (meta.category_vocab, meta.category_codes)}
    coded["user_creator"] = (meta.creator_vocab, meta.creator_codes)
    crosses = {e: _crosses(subs, keys, *coded[e]) for e, keys in cross_keys.items() if keys}
    user: dict[str, object] = {}
    items: dict[str, np.ndarray] = {}
    values: dict[str, object] = {}
    get = user_sums.get
    for name, key, as_int in plan.user:  # plain user counters and sums: most features, one lookup
        values[name] = v = get(key, 0.0)
        user[name] = int(v) if as_int else v
    ndarray = np.ndarray
    for f, kind, arg in steps:
        if kind == "ratio":
            num, den = (values[x] for x in f.of)
            if isinstance(num, ndarray) or isinstance(den, ndarray):
                num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
                v: object = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
            else:
                v = float(num) / float(den) if den != 0 else 0.0  # type: ignore[arg-type]
        elif kind == "user":
            v = user_sums.get(arg, 0.0)
        elif kind == "item":
            v = item_matrix[:, arg] if n else np.zeros(0)
            if f.dtype == "int" and f.aggregation != "exists":  # a row of the int copy, made once
                values[f.name], items[f.name] = v, columns[arg]
                continue
        elif kind == "cross":
            v = crosses[f.entity][:, arg]
        elif kind == "user_item":  # one sub-entity per item: its own id
            vals = subs.get(arg)
            found = np.fromiter(map(vals.get, item_ids, repeat(0.0)), np.float64, n) if vals else np.zeros(n)
            v = np.maximum(found, 0.0)
        elif kind == "distinct":
            v = sum(1 for x in subs.get(arg, {}).values() if x > 0)
        elif kind == "last_n":
            v = last_n(recent, t, f.n)
        else:  # age_days
            v = np.where(np.isnan(meta.published_at), -1.0, (t - meta.published_at) / DAY)
        if f.aggregation == "exists":
            v = (v > 0).astype(np.float64) if isinstance(v, ndarray) else float(v > 0)  # type: ignore[operator]
        values[f.name] = v
        if isinstance(v, ndarray):
            items[f.name] = v.astype(np.int64) if f.dtype == "int" else v.copy() if kind == "item" else v
        else:
            user[f.name] = int(v) if f.dtype == "int" else v  # type: ignore[call-overload]
    return {k: user[k] for k in plan.names if k in user}, {k: items[k] for k in plan.names if k in items}


@dataclass(frozen=True)
class _Plan:
    """How :func:`compute` derives ``defs``: plain user features first, then the other steps."""

    user: list[tuple[str, tuple[str, str, str, str], bool]]  # (name, sums key, int)
    steps: list[tuple[FeatureDef, str, object]]  # (feature, kind, argument)
    cross: dict[str, list[tuple[str, str, str]]]  # the sums each cross entity gathers
    sub_groups: set[str]  # the groups read by sub-entity
    names: list[str]  # the output order: as in defs


_PLANS: dict[int, tuple[Sequence[FeatureDef], _Plan]] = {}


def _plan(defs: Sequence[FeatureDef]) -> _Plan:
    """The :class:`_Plan` of ``defs`` (memoised per ``defs`` object)."""
    memo = _PLANS.get(id(defs))
    if memo is not None and memo[0] is defs:
        return memo[1]
    cols = {c: j for j, c in enumerate(item_columns(defs))}
    cross: dict[str, list[tuple[str, str, str]]] = {"user_category": [], "user_creator": []}
    steps: list[tuple[FeatureDef, str, object]] = []
    for f in defs:
        key, agg = (f.group(), f.counter, f.window), f.aggregation
        if agg in ("ratio", "mean", "last_n", "age_days"):
            steps.append((f, "ratio" if agg == "mean" else agg, None))
        elif f.entity in ("user", "item"):
            arg = (*key[:2], "", key[2]) if f.entity == "user" else cols[key]
            steps.append((f, f.entity, arg))
        elif agg == "distinct_count":
            steps.append((f, "distinct", key))
        elif f.entity == "user_item":
            steps.append((f, "user_item", key))
        else:
            keys = cross[f.entity]
            if key not in keys:
                keys.append(key)
            steps.append((f, "cross", keys.index(key)))
    sub_groups = {f.group() for f, kind, _ in steps if kind in ("cross", "user_item", "distinct")}
    plain = [(f, k, a) for f, k, a in steps if k == "user" and f.aggregation != "exists"]
    user = [(f.name, a, f.dtype == "int") for f, _, a in plain]
    rest = [s for s in steps if s not in plain]
    plan = _Plan(user, rest, cross, sub_groups, [f.name for f in defs])
    if len(_PLANS) > 64:
        _PLANS.clear()
    _PLANS[id(defs)] = (defs, plan)
    return plan
