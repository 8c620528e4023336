"""Items and users tables: ids, text, categories, tags, attributes JSON — from the truth arrays.

Text carries the category signal: every category owns a vocabulary of made-up words (its first
``N_TAGS`` words double as its tags); titles draw mostly from the item's category vocabularies,
descriptions mix them with common English filler. A content model can therefore recover an item's
categories from its text alone. Strings are assembled with Arrow kernels (take + list join).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.schema import ITEMS, USERS
from funnel.data.synthetic.config import SyntheticConfig
from funnel.data.synthetic.tables import make_ids, take_ids, timestamps
from funnel.data.synthetic.truth import GroundTruth

CATEGORY_NAMES = (
    "comedy", "drama", "news", "sports", "music", "cooking", "travel", "science", "gaming",
    "fashion", "history", "nature", "technology", "fitness", "animation", "documentary", "kids",
    "finance", "art", "cars", "horror", "romance", "politics", "education",
)  # fmt: skip
"""Names of the first categories; later ones are called ``category_<k>``."""
FILLER = (
    "the", "a", "of", "and", "with", "in", "on", "for", "new", "best", "story", "guide", "episode",
    "part", "live", "official", "full", "short", "top", "how", "why", "day", "night", "world",
    "life", "time", "first", "last", "great", "little", "big", "secret", "real", "inside", "behind",
    "making", "update", "review", "highlights", "special", "edition", "series", "season", "show",
    "moment", "journey", "look", "tips", "ideas", "way", "home", "city", "people", "today", "week",
    "year", "old", "young", "free", "easy",
)  # fmt: skip
"""Common words shared by all categories (no category signal)."""
SYLLABLES = (
    "ka", "lo", "mi", "ren", "tos", "va", "qui", "bel", "dor", "fen", "gal", "hu", "jas", "kor",
    "lun", "mar", "nes", "pol", "rav", "sil", "tam", "ur", "vek", "wyn", "xal", "yor", "zed", "bri",
    "cha", "dru", "el", "fro", "gle", "ith", "jun", "kle", "mo", "nar", "osk", "pry",
)  # fmt: skip
WORDS_PER_CATEGORY = 30
"""Size of each category's vocabulary."""
N_TAGS = 8
"""The first words of a category vocabulary that serve as its tags."""
TEXT_BLOCK = 1 << 16
"""Items per block when assembling text."""
AGE_RATINGS = ("all", "13+", "18+")
"""Item age ratings, by code."""


def category_names(k: int) -> list[str]:
    """Names of ``k`` categories."""
    return [CATEGORY_NAMES[j] if j < len(CATEGORY_NAMES) else f"category_{j}" for j in range(k)]


def vocabulary(n_categories: int, rng: np.random.Generator) -> list[str]:
    """``n_categories * WORDS_PER_CATEGORY`` distinct made-up words (category ``c`` owns a block)."""
    need = n_categories * WORDS_PER_CATEGORY
    words: dict[str, None] = {}
    filler = set(FILLER)
    while len(words) < need:
        m = 2 * (need - len(words)) + 16
        sy = rng.integers(0, len(SYLLABLES), (m, 4))
        size = rng.choice([2, 3, 4], m, p=[0.5, 0.4, 0.1])  # 40**4 words: enough for 10k categories
        for row, k in zip(sy.tolist(), size.tolist(), strict=True):
            w = "".join(SYLLABLES[s] for s in row[:k])
            if w not in filler:
                words[w] = None
    return list(words)[:need]


def _texts(
    rng: np.random.Generator,
    cats: np.ndarray,
    words: pa.Array,
    lengths: tuple[int, int],
    p_cat: float,
    p_second: float,
) -> pa.Array:
    """One text of ``lengths[0]..lengths[1]`` words per item, built in blocks to bound memory.

    A word is from the item's categories with probability ``p_cat`` (from its second category, if
    any, with ``p_second`` of that), else filler. ``words`` is ``vocabulary + FILLER``.
    """
    n_filler = len(FILLER)
    first_filler = len(words) - n_filler
    out = []
    for lo in range(0, max(len(cats), 1), TEXT_BLOCK):
        block = cats[lo : lo + TEXT_BLOCK]
        size = rng.integers(lengths[0], lengths[1] + 1, len(block))
        owner = np.repeat(np.arange(len(block), dtype=np.int32), size)
        u = rng.random(len(owner), dtype=np.float32)
        second = block[owner, 1]
        cat = np.where((second >= 0) & (u < p_cat * p_second), second, block[owner, 0])
        cat_word = cat * WORDS_PER_CATEGORY + rng.integers(0, WORDS_PER_CATEGORY, len(owner), dtype=np.int32)
        filler_word = first_filler + rng.integers(0, n_filler, len(owner), dtype=np.int32)
        index = pa.array(np.where(u < p_cat, cat_word, filler_word))
        offsets = pa.array(np.concatenate([[0], np.cumsum(size)]).astype(np.int32))
        out.append(pc.binary_join(pa.ListArray.from_arrays(offsets, words.take(index)), " "))
    return pa.concat_arrays(out)[: len(cats)]


def items_table(cfg: SyntheticConfig, truth: GroundTruth, rng: np.random.Generator) -> pa.Table:
    """The canonical items table of the world (row ``j`` is item index ``j``)."""
    n, cats = truth.n_items, truth.item_categories
    vocab = vocabulary(cfg.n_categories, rng)
    words = pa.array([*vocab, *FILLER])
    title = pc.utf8_title(_texts(rng, cats, words, (2, 5), 0.75, 0.25))
    desc = pc.binary_join_element_wise(_texts(rng, cats, words, (12, 30), 0.45, 0.3), ".", "")
    n_tags = rng.integers(1, 4, n)
    first = rng.integers(0, N_TAGS, n)
    owner = np.repeat(np.arange(n), n_tags)
    step = np.arange(len(owner)) - np.repeat(np.cumsum(n_tags) - n_tags, n_tags)
    tag_idx = cats[owner, 0].astype(np.int64) * WORDS_PER_CATEGORY + (first[owner] + step) % N_TAGS
    tag_off = pa.array(np.concatenate([[0], np.cumsum(n_tags)]).astype(np.int32))
    has2 = cats[:, 1] >= 0
    cat_off = pa.array(np.concatenate([[0], np.cumsum(1 + has2)]).astype(np.int32))
    cat_flat = cats.ravel()[np.stack([np.ones(n, dtype=bool), has2], axis=1).ravel()]
    names = pa.array(category_names(cfg.n_categories))
    nc = len(cfg.countries)
    combos = []
    for rating in range(3):
        for region in range(-1, nc):
            for sponsored in (False, True):
                attrs: dict = {"age_rating": AGE_RATINGS[rating], "sponsored": sponsored}
                if region >= 0:  # licensed in one country; the rest are unrestricted (no "regions")
                    attrs["regions"] = [cfg.countries[region]]
                combos.append(json.dumps(attrs, sort_keys=True))
    combo = (truth.item_age_rating.astype(np.int64) * (nc + 1) + truth.item_region + 1) * 2
    combo += truth.item_sponsored
    return pa.Table.from_arrays(
        [
            make_ids("i", n),
            title,
            desc,
            pa.ListArray.from_arrays(cat_off, take_ids(names, cat_flat)),
            pa.ListArray.from_arrays(tag_off, words.take(pa.array(tag_idx))),
            take_ids(make_ids("c", cfg.creators, 4), truth.item_creator),
            timestamps(truth.item_published_ms),
            pc.take(pa.array(["listed"]), pa.array(np.zeros(n, dtype=np.int32))),
            take_ids(pa.array(combos), combo),
        ],
        schema=ITEMS,
    )


def users_table(cfg: SyntheticConfig, truth: GroundTruth) -> pa.Table:
    """The canonical users table (attributes: country, age_bucket, device)."""
    nc, na, nd = len(cfg.countries), len(cfg.age_buckets), len(cfg.devices)
    combos = [
        json.dumps({"age_bucket": a, "country": c, "device": d}, sort_keys=True)
        for c in cfg.countries
        for a in cfg.age_buckets
        for d in cfg.devices
    ]
    code = (truth.user_country.astype(np.int64) * na + truth.user_age_bucket) * nd + truth.user_device
    assert len(combos) == nc * na * nd
    return pa.Table.from_arrays(
        [make_ids("u", truth.n_users), timestamps(truth.user_created_ms), take_ids(pa.array(combos), code)],
        schema=USERS,
    )
