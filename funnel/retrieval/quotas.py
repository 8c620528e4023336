"""Learned quotas: the merge weights that maximise the merged recall on a validation split.

:func:`learn_quotas` holds out the tail of the *training* data with :func:`funnel.eval.splits.make_split`
(``temporal`` by default: a global cut at the ``ratio`` quantile of the training events' times —
the same rule the retrieval report splits with, one level down), fits the sources on the part
before the cut, asks them for ``total`` candidates for a sample of the held-out users with at
least ``min_history`` training items (the warm ones), and runs :func:`greedy_slots` on the lists.

:func:`greedy_slots` is water-filling over rank blocks: every source starts with no slots; the next
``block`` ranks of some source are then given out, each time to the source whose block adds the
most new held-out hits (each hit worth ``1 / |user's held-out items|``, so mean Recall@K is what
grows) per new distinct candidate (items already in the union cost nothing), as long as the mean
union stays within ``total`` items per user (the merge fills the rest in proportion). A source's
slot count is its prefix length; the merge's quota weights are proportional to it (``merge``
picks by ``rank / quota``, so every source is cut at the same fraction of its slots).

With ``merge_by="fusion"`` the weights are instead those of weighted rank fusion
(:mod:`funnel.retrieval.fusion`), learned by :func:`~funnel.retrieval.fusion.fusion_weights` on the
same validation lists, each source's cut at ``overfetch × total`` as when serving.

Example:
    >>> test = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]], dtype=np.float32))
    >>> good = [np.array([0, 1, 4]), np.array([2, 3, 4])]
    >>> bad = [np.array([5, 4, 0]), np.array([5, 4, 2])]
    >>> greedy_slots({"good": good, "bad": bad}, test, total=2, block=1)
    {'good': 2, 'bad': 0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from funnel.core.errors import ValidationError
from funnel.core.interactions import Interactions
from funnel.eval.splits import Split, make_split
from funnel.retrieval.fusion import fusion_weights
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import member, user_attributes

SEGMENT_FIELDS = ("country", "age_bucket", "device")
"""User attributes passed as query segments."""


def recent_items(inter: Interactions, n_users: int) -> list[np.ndarray]:
    """Per user, their distinct positive items, most recent (last event) first."""
    pos = inter.positive_mask()
    u, i, ts = (
        inter.user_idx[pos].astype(np.int64),
        inter.item_idx[pos].astype(np.int64),
        inter.timestamp[pos],
    )
    order = np.lexsort((-ts, u))
    u, i = u[order], i[order]
    key = u * max(1, inter.n_items) + i
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    u, i = u[first], i[first]
    bounds = np.searchsorted(u, np.arange(n_users + 1))
    return [i[bounds[v] : bounds[v + 1]] for v in range(n_users)]


def history_query(data: RetrievalData, users: np.ndarray) -> RetrievalQuery:
    """The request of ``users`` at ``data.now_ms``: histories ``data.X``, recent items, segments."""
    recent = recent_items(data.interactions, data.X.shape[0])
    attrs = user_attributes(data.users, SEGMENT_FIELDS)
    segments = [{f: attrs[f][u] for f in SEGMENT_FIELDS if attrs[f][u]} for u in users]
    ids = data.users.column("user_id").take(pa.array(users)).to_pylist()
    return RetrievalQuery(ids, data.X[users], [recent[u] for u in users], segments, data.now_ms)


def split_data(data: RetrievalData, protocol: str, ratio: float, seed: int) -> tuple[RetrievalData, Split]:
    """``data``'s training part under ``make_split`` (events kept, ``now`` = the cut) and the split."""
    inter = data.interactions
    split = make_split(inter, protocol, ratio, seed)
    m = inter.n_items
    if split.cut_timestamp is not None:
        mask = inter.timestamp <= split.cut_timestamp
    else:
        tr = split.train.tocoo()
        mask = member(
            inter.user_idx.astype(np.int64) * m + inter.item_idx, tr.row.astype(np.int64) * m + tr.col
        )
    train = inter.subset(mask)
    now = split.cut_timestamp if split.cut_timestamp is not None else int(train.timestamp.max(initial=0))
    return RetrievalData(train, split.train, data.items, data.users, int(now)), split


def retrieve_batched(
    sources: Mapping[str, Any], query: RetrievalQuery, k: int, batch: int = 1024
) -> dict[str, list[Candidates]]:
    """Every source's ``k`` candidates per user of ``query``, asked ``batch`` users at a time."""
    out: dict[str, list[Candidates]] = {name: [] for name in sources}
    for s in range(0, len(query), batch):
        sub = query.batch(s, s + batch)
        for name, source in sources.items():
            out[name] += source.retrieve(sub, k)
    return out


def greedy_slots(
    lists: Mapping[str, Sequence[np.ndarray]], test: sp.csr_matrix, total: int, block: int = 25
) -> dict[str, int]:
    """Per source, its prefix length (a multiple of ``block``) chosen by greedy water-filling.

    Args:
        lists: source name -> per user, the ranked candidate items (user ``u`` is row ``u`` of ``test``).
        test: the held-out items (binary ``n_users × n_items``).
        total: the mean number of distinct candidates per user to fill.
        block: ranks given out per step.
    """
    return greedy_path(lists, test, (total,), block)[0]


def greedy_path(
    lists: Mapping[str, Sequence[np.ndarray]], test: sp.csr_matrix, totals: Sequence[int], block: int = 25
) -> list[dict[str, int]]:
    """:func:`greedy_slots` for each of ``totals`` (one greedy run, snapshots on the way)."""
    names = list(lists)
    n_users, m = test.shape
    n_test = np.diff(test.indptr)
    test_keys = np.repeat(np.arange(n_users, dtype=np.int64), n_test) * m + test.indices
    keys, blocks, src = [], [], []
    for s, name in enumerate(names):
        lens = np.array([len(x) for x in lists[name]], dtype=np.int64)
        if lens.sum() == 0:
            continue
        items = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists[name]])
        keys.append(np.repeat(np.arange(n_users, dtype=np.int64), lens) * m + items)
        blocks.append((np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)) // block)
        src.append(np.full(lens.sum(), s, dtype=np.int64))
    slots = dict.fromkeys(names, 0)
    if not keys:
        return [dict(slots) for _ in totals]
    uniq, kid = np.unique(np.concatenate(keys), return_inverse=True)
    worth = np.where(member(uniq, test_keys), 1.0 / np.maximum(n_test[uniq // m], 1), 0.0)
    blk, srcs = np.concatenate(blocks), np.concatenate(src)
    order = np.lexsort((blk, srcs))
    kid, blk, srcs = kid[order], blk[order], srcs[order]
    n_blocks = int(blk.max()) + 1
    bounds = np.searchsorted(srcs * n_blocks + blk, np.arange(len(names) * n_blocks + 1))
    covered = np.zeros(len(uniq), dtype=bool)
    nxt = np.zeros(len(names), dtype=np.int64)
    budgets, used, path = sorted(float(t) * n_users for t in totals), 0.0, {}

    def step(s: int, b: int) -> np.ndarray:
        return kid[bounds[s * n_blocks + b] : bounds[s * n_blocks + b + 1]] if b < n_blocks else kid[:0]

    while len(path) < len(budgets):
        while len(path) < len(budgets) and used >= budgets[len(path)]:
            path[budgets[len(path)]] = dict(slots)
        if len(path) == len(budgets):
            break
        best, best_eff, best_new = -1, -1.0, np.empty(0, np.int64)
        for s in range(len(names)):
            eff, seen = -1.0, 0
            for look in (1, 2, 4, 8, n_blocks):  # best hits per new item over any horizon
                ids = np.concatenate(
                    [step(s, b) for b in range(nxt[s], min(nxt[s] + look, n_blocks))] or [kid[:0]]
                )
                if len(ids) == seen:
                    break
                seen = len(ids)
                new = ids[~covered[ids]]
                eff = max(eff, worth[new].sum() / len(new) if len(new) else np.inf)
            if not seen:
                continue
            if eff > best_eff:
                best, best_eff, best_new = s, eff, step(s, nxt[s])
        if best < 0 or best_eff <= 0:
            break  # nothing left that finds anything
        fresh = best_new[~covered[best_new]]
        while len(path) < len(budgets) and used + len(fresh) > budgets[len(path)]:
            path[budgets[len(path)]] = dict(slots)  # the last state within the budget
        covered[fresh] = True
        used += len(fresh)
        nxt[best] += 1
        slots[names[best]] = int(nxt[best]) * block
    return [path.get(float(t) * n_users, slots) for t in totals]


def _weights(slots: Mapping[str, int], total: int) -> dict[str, float]:
    if not sum(slots.values()):
        return {name: 1.0 / len(slots) for name in slots}
    return {name: n / total for name, n in slots.items()}


def learn_quotas(
    fit_sources: Callable[[RetrievalData], Mapping[str, Any]],
    data: RetrievalData,
    total: int,
    *,
    protocol: str = "temporal",
    ratio: float = 0.8,
    max_users: int = 1000,
    min_history: int = 5,
    min_group: int = 100,
    block: int | None = None,
    seed: int = 0,
    budgets: Sequence[int] = (),
    merge_by: str = "quota",
    overfetch: float = 1.5,
) -> dict[str, dict[int, dict[str, float]]]:
    """Merge weights learned on a validation split of ``data``.

    ``merge_by="quota"``: each source's slots / ``total``; the weights of a group sum to the
    overlap factor (slots given out per distinct candidate, at least about 1): each source must be
    asked for that many times its share of ``total``. ``"fusion"``: rank-fusion weights (largest 1).

    Args:
        fit_sources: fits the configured sources on a :class:`RetrievalData` (name -> fitted source).
        data: the training data; only its part before the validation cut is fitted on.
        total: merged candidates per user the weights are for.
        protocol: the validation split's protocol (``make_split`` on ``data.interactions``).
        ratio: its training fraction.
        max_users: validation users sampled per group (users with held-out items).
        min_history: users with at least this many training items are warm, the others warming.
        min_group: a group with fewer validation users gets no weights of its own.
        block: ranks per greedy step (default ``total // 40``, at least 1).
        seed: the split's seed (``strat``) and the user sample's.
        budgets: smaller candidate counts to learn weights for too.
        merge_by: ``"quota"`` (greedy slots for :func:`~funnel.retrieval.merge.merge`) or ``"fusion"``
            (weights for :func:`~funnel.retrieval.fusion.fuse`).
        overfetch: with ``"fusion"``, each source's list is cut at ``overfetch ×`` the budget.

    Returns:
        ``{group: {budget: weights}}`` for ``"warm"`` and ``"warming"``, each when there were
        ``min_group`` validation users of the group.
    """
    if merge_by not in ("quota", "fusion"):
        raise ValidationError(f'merge_by must be "quota" or "fusion", got {merge_by!r}', field="merge_by")
    train, split = split_data(data, protocol, ratio, seed)
    n_hist = np.diff(train.X.indptr)[split.test_users]
    rng = np.random.default_rng(seed)
    groups = {"warm": split.test_users[n_hist >= min_history]}
    groups["warming"] = split.test_users[(n_hist >= 1) & (n_hist < min_history)]
    groups = {g: u for g, u in groups.items() if len(u) >= min_group}
    groups = {
        g: np.sort(rng.choice(u, max_users, replace=False)) if len(u) > max_users else u
        for g, u in groups.items()
    }
    if not groups:
        return {}
    users = np.concatenate(list(groups.values()))
    sources = fit_sources(train)
    totals = sorted({*budgets, total})
    depth = math.ceil(overfetch * total) if merge_by == "fusion" else total
    lists = retrieve_batched(sources, history_query(train, users), depth)
    out: dict[str, dict[int, dict[str, float]]] = {}
    start = 0
    for g, u in groups.items():
        got = {name: [c.items for c in cands[start : start + len(u)]] for name, cands in lists.items()}
        if merge_by == "fusion":
            out[g] = {
                t: fusion_weights(_cut(got, math.ceil(overfetch * t)), split.test[u], t) for t in totals
            }
        else:
            path = greedy_path(got, split.test[u], totals, block or max(1, total // 40))
            out[g] = {t: _weights(slots, t) for t, slots in zip(totals, path, strict=True)}
        start += len(u)
    return out


def _cut(lists: Mapping[str, Sequence[np.ndarray]], k: int) -> dict[str, list[np.ndarray]]:
    return {name: [x[:k] for x in per_user] for name, per_user in lists.items()}
