"""Leak-free label construction: the time cut, the label window and one label per ranker head.

The training events are cut by time into *history* (strictly before the cut: sources and
features see only these) and the *label window* (at or after it). ``split="user"`` (default) cuts
each user with at least ``min_user_events`` events at ``last - label_fraction · (last - first)``
of their own events (:func:`user_cuts`), so every active user contributes labels, as the
per-user offline protocols test; ``split="global"`` cuts everyone at ``t_max - label_fraction ·
(t_max - t_min)`` (:func:`time_cut`), the shape of a live system retrained on its recent days.
``label_days`` replaces the fraction by a fixed window. Either way a cut depends only on first
and last event times, so adding or removing an event strictly inside a window changes no history —
the leakage test relies on this. ``split="random"`` holds out a ``label_fraction`` of each such
user's events by a hash of ``(seed, user, item)`` — the question the ``strat`` protocol asks
(missing items, not next ones); an event's side depends on nothing else, so it is leak-free in
the same sense, and ``draws`` independent random splits can be stacked (:class:`LabelConfig`).
:func:`label_mask` gives the label events of any split.

Labels of a ``(user, item)`` pair, from its label-window events (:func:`head_labels`):

* ``engage`` — any positive event (not skip / not_interested / dislike);
* ``like`` — a ``like`` event, or a ``rating`` of at least ``like_fraction`` of the top rating seen;
* ``complete`` — a ``watch`` whose value (completion ratio) is at least ``completion``;
* ``dislike`` — a ``skip``, ``not_interested`` or ``dislike`` event, or a rating at most
  ``dislike_fraction`` of the top rating.

A head whose events do not occur in the data at all is absent from :func:`available_heads`, with
the reason, so it is skipped rather than trained on all-zero labels.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "a"], "timestamp": [0, 5, 9, 10],
    ...               "type": ["click", "rating", "skip", "rating"], "value": [None, 9.0, None, 2.0]})
    >>> inter = Interactions.from_table(t)
    >>> cfg = LabelConfig(label_fraction=0.5)
    >>> time_cut(inter, cfg)
    5
    >>> heads, why = available_heads(inter, cfg)
    >>> heads, why["complete"]
    (('engage', 'like', 'dislike'), 'complete: no watch events with a completion value')
    >>> keys = head_labels(inter.subset(inter.timestamp >= 5), cfg, heads)
    >>> {h: sorted(k.tolist()) for h, k in keys.items()}  # keys: user * n_items + item
    {'engage': [0, 1], 'like': [1], 'dislike': [0, 2]}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from funnel.core.errors import ValidationError
from funnel.core.interactions import NEGATIVE_CODES, Interactions
from funnel.core.schema import EVENT_CODE

SPLITS = ("user", "global", "random")
"""Label-window shapes (see the module docstring)."""
PROTOCOL_SPLIT = {"usertemporal": "user", "temporal": "global", "strat": "random"}
"""The label split that asks the question each offline protocol measures."""


SPLIT_DEFAULTS = {
    "user": {"label_fraction": 0.35, "draws": 1},
    "global": {"label_fraction": 0.35, "draws": 1},
    "random": {"label_fraction": 0.2, "draws": 3},
}
"""``label_fraction`` and ``draws`` per split when :class:`LabelConfig` leaves them ``None``."""


@dataclass(frozen=True)
class LabelConfig:
    """How the label window and the head labels are made (see the module docstring).

    ``label_fraction`` and ``draws`` default per split (:data:`SPLIT_DEFAULTS`). ``draws``
    independent random splits (seeds ``seed``, ``seed + 1``, …) are stacked by the trainer; only
    ``split="random"`` can draw more than once (a time cut is one cut).

    Time splits: ``label_fraction`` 0.35 (was 0.2): more label events per user gave the ranker the
    training signal it lacked — synthetic usertemporal NDCG@10 0.1277 -> 0.1447 (EASE 0.1439);
    MovieTweetings usertemporal 0.1234 -> 0.1233 (EASE 0.0989).

    Random split (``strat``; NDCG@10, ``benchmarks/pipeline_quality.py``, EASE 0.1945 synthetic /
    0.1491 MovieTweetings): one draw of 0.35 gave 0.1914 / 0.1497 and one of 0.5 0.1956 / 0.1452 —
    more labels help, but every label event is taken out of the history the sources and features
    see, so training sees weaker sources than serving does. Several draws of a small fraction get
    both: 3 x 0.2 gives 0.1963 / 0.1522 (2 x 0.35: 0.1936 / 0.1502; 2 x 0.5: 0.1966 / 0.1495).
    """

    label_fraction: float | None = None
    label_days: float | None = None
    split: str = "user"
    min_user_events: int = 5
    seed: int = 0
    like_fraction: float = 0.7
    dislike_fraction: float = 0.4
    completion: float = 0.8
    draws: int | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValidationError(f"must be one of {', '.join(SPLITS)}, got {self.split!r}", field="split")
        for name, value in SPLIT_DEFAULTS[self.split].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if not 0.0 < self.label_fraction < 1.0:
            raise ValidationError(f"must be in (0, 1), got {self.label_fraction}", field="label_fraction")
        if self.label_days is not None and self.label_days <= 0:
            raise ValidationError(f"must be > 0, got {self.label_days}", field="label_days")
        if self.draws < 1 or (self.draws > 1 and self.split != "random"):
            raise ValidationError(f"must be 1, or more with split='random', got {self.draws}", field="draws")


def time_cut(inter: Interactions, cfg: LabelConfig) -> int:
    """The first label-window millisecond (history is ``timestamp < cut``)."""
    if not len(inter):
        raise ValidationError("no interactions to split into history and labels", field="interactions")
    lo, hi = int(inter.timestamp.min()), int(inter.timestamp.max())
    if cfg.label_days is not None:
        return hi - int(cfg.label_days * 86_400_000)
    return hi - int(cfg.label_fraction * (hi - lo))


def user_cuts(inter: Interactions, cfg: LabelConfig) -> np.ndarray:
    """``int64 [n_users]`` per-user cuts (``split="user"``); users without a window get int64 max.

    A user with at least ``min_user_events`` events is cut at ``last - label_fraction · (last -
    first)`` of their own events (``last - label_days`` when set); with ``split="global"`` every
    user gets :func:`time_cut`.
    """
    big = np.iinfo(np.int64).max
    if cfg.split == "global":
        return np.full(inter.n_users, time_cut(inter, cfg), dtype=np.int64)
    u = inter.user_idx.astype(np.int64)
    first = np.full(inter.n_users, big, dtype=np.int64)
    last = np.full(inter.n_users, -big, dtype=np.int64)
    np.minimum.at(first, u, inter.timestamp)
    np.maximum.at(last, u, inter.timestamp)
    count = np.bincount(u, minlength=inter.n_users)
    if cfg.label_days is not None:
        cut = last - int(cfg.label_days * 86_400_000)
    else:
        cut = last - (cfg.label_fraction * (last - first)).astype(np.int64)
    ok = (count >= cfg.min_user_events) & (cut > first)
    return np.where(ok, cut, big)


def splitmix(x: np.ndarray) -> np.ndarray:
    """A uniform ``[0, 1)`` draw per ``uint64`` key (the SplitMix64 finaliser; wraps mod 2**64)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


def label_mask(inter: Interactions, cfg: LabelConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(is_label per event, feature time per user)`` under ``cfg.split``.

    The feature time of a user is their cut (``user`` / ``global``) or, for ``random``, one past
    the last history event overall; users without labels get the same.
    """
    if cfg.split != "random":
        cuts = user_cuts(inter, cfg)
        is_label = inter.timestamp >= cuts[inter.user_idx]
        end = int(inter.timestamp[~is_label].max(initial=0)) + 1
        return is_label, np.minimum(cuts, end)
    u = inter.user_idx.astype(np.int64)
    count = np.bincount(u, minlength=inter.n_users)
    keys = (u * max(1, inter.n_items) + inter.item_idx).astype(np.uint64)
    with np.errstate(over="ignore"):  # the seed's offset wraps mod 2**64 like the rest of the hash
        offset = np.uint64(cfg.seed) * np.uint64(0xBF58476D1CE4E5B9)
    draw = splitmix(keys + offset)
    is_label = (draw < cfg.label_fraction) & (count[u] >= cfg.min_user_events)
    end = int(inter.timestamp[~is_label].max(initial=0)) + 1
    return is_label, np.full(inter.n_users, end, dtype=np.int64)


def _top_rating(inter: Interactions) -> float:
    ratings = inter.value[(inter.type_code == EVENT_CODE["rating"]) & ~np.isnan(inter.value)]
    return float(ratings.max()) if len(ratings) else np.nan


def available_heads(inter: Interactions, cfg: LabelConfig) -> tuple[tuple[str, ...], dict[str, str]]:
    """The heads the data can label, and why each missing one is missing."""
    codes = set(np.unique(inter.type_code).tolist())
    rated = np.isfinite(_top_rating(inter))
    has = {
        "engage": bool(np.any(inter.positive_mask())),
        "like": EVENT_CODE["like"] in codes or rated,
        "complete": bool(np.any((inter.type_code == EVENT_CODE["watch"]) & ~np.isnan(inter.value))),
        "dislike": bool(np.isin(NEGATIVE_CODES, list(codes)).any()) or rated,
    }
    why = {
        "engage": "engage: no positive events",
        "like": "like: no like or rating events",
        "complete": "complete: no watch events with a completion value",
        "dislike": "dislike: no skip, not_interested, dislike or rating events",
    }
    return tuple(h for h, ok in has.items() if ok), {h: why[h] for h, ok in has.items() if not ok}


def head_labels(
    window: Interactions, cfg: LabelConfig, heads: tuple[str, ...], top_rating: float | None = None
) -> dict[str, np.ndarray]:
    """Per head, the sorted unique ``user * n_items + item`` keys labelled positive in ``window``."""
    top = _top_rating(window) if top_rating is None else top_rating
    code, value = window.type_code, window.value
    rating = code == EVENT_CODE["rating"]
    with np.errstate(invalid="ignore"):
        masks = {
            "engage": window.positive_mask(),
            "like": (code == EVENT_CODE["like"]) | (rating & (value >= cfg.like_fraction * top)),
            "complete": (code == EVENT_CODE["watch"]) & (value >= cfg.completion),
            "dislike": np.isin(code, NEGATIVE_CODES) | (rating & (value <= cfg.dislike_fraction * top)),
        }
    key = window.user_idx.astype(np.int64) * max(1, window.n_items) + window.item_idx
    return {h: np.unique(key[masks[h]]) for h in heads}
