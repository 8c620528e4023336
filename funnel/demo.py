"""``funnel demo``: the whole walking skeleton on synthetic data, end to end, in well under a minute.

Generates a seeded synthetic world with a hidden ground truth, imports it into an engine in the
data directory, trains (the retrieval + ranking pipeline, and the strongest baseline as its
fallback), prints
recommendations with reasons for a few users and a brand-new one, and checks the recommendations
against the ground-truth oracle (the share of recommended items that are among the user's true
top-100), next to the popularity list, so the numbers printed are real quality, not decoration.

The data directory is left with a trained engine that ``funnel recommend`` (and later
``funnel serve``) use. A directory that holds anything other than an earlier demo is refused.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from funnel.cli_output import recommendations_table, train_table
from funnel.core.errors import ConfigError
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.engine import Engine
from funnel.rerank.filters import policy_ok
from funnel.retrieval.sources.common import user_attributes

MARKER = ".funnel-demo"
ORACLE_K = 100


def _prepare(data_dir: Path) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise ConfigError(
                f"{data_dir} holds data that is not from `funnel demo`; give an empty or new --data-dir"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("created by funnel demo; `funnel demo` may delete this folder\n")


def _ineligible(engine: Engine, dataset, user_rows: np.ndarray) -> list[np.ndarray]:
    """Per user, the dataset positions of items the hard policy (age, region) keeps from them."""
    ranking = engine.pipeline().ranking
    if ranking is None:
        return [np.empty(0, np.int64)] * len(user_rows)
    attrs = user_attributes(dataset.users, ("age_bucket", "country"))
    bundle_idx = engine.pipeline().bundle.items.lookup(dataset.items.column("item_id"))
    return [
        np.flatnonzero(~policy_ok(ranking.reranker.table, bundle_idx, attrs["age_bucket"][u] or None,
                                  attrs["country"][u] or None))
        for u in user_rows.tolist()
    ]  # fmt: skip


def oracle_overlap(engine: Engine, dataset, user_rows: np.ndarray, k: int) -> tuple[float, float]:
    """Mean share of each user's top-``k`` (engine, popularity) inside their true top-100.

    The oracle ranks only what the user may be shown: unseen items the hard policy (age rating,
    region licensing) allows them, as the served pages do.
    """
    user_ids = dataset.users.column("user_id").take(user_rows).to_pylist()
    item_ids = dataset.items.column("item_id").to_pylist()
    position = {item: i for i, item in enumerate(item_ids)}
    recs = engine.recommend_batch(user_ids, k)
    pipeline = engine.pipeline()
    history = pipeline.history_rows(user_ids)
    seen_truth = [
        np.array([position[i] for i in pipeline.bundle.items.keys_of(history[r].indices)], dtype=np.int64)
        for r in range(len(user_ids))
    ]
    blocked = _ineligible(engine, dataset, user_rows)
    exclude = [np.union1d(s, b) for s, b in zip(seen_truth, blocked, strict=True)]
    oracle = dataset.truth.top_k(user_rows, ORACLE_K, exclude=exclude)
    popular_ids = pipeline.bundle.items.keys_of(pipeline.popular(k + 2000))
    ours, pop = [], []
    for r, user in enumerate(user_ids):
        truth = set(oracle[r].tolist())
        ours.append(np.mean([position[i] in truth for i in recs[user]]) if recs[user] else 0.0)
        seen = set(exclude[r].tolist())
        pop_list = [i for i in popular_ids if position[i] not in seen][:k]
        pop.append(np.mean([position[i] in truth for i in pop_list]))
    return float(np.mean(ours)), float(np.mean(pop))


def run_demo(
    data_dir: Path, n_users: int, n_items: int, n_interactions: int, seed: int, console: Console
) -> None:
    """Run the demo; see the module docstring."""
    data_dir = Path(data_dir)
    _prepare(data_dir)
    started = time.perf_counter()
    config = SyntheticConfig(n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=seed)
    with console.status("generating synthetic users, items and interactions…"):
        dataset = generate(config)
    console.print(
        f"[bold]1. generated[/] {dataset.interactions.num_rows:,} interactions by {dataset.users.num_rows:,} "
        f"users on {dataset.items.num_rows:,} items (seed {seed})"
    )
    engine = Engine(data_dir)
    engine.import_items(dataset.items)
    engine.import_users(dataset.users)
    engine.import_interactions(dataset.interactions)
    console.print(f"[bold]2. imported[/] into {data_dir}/lake (validated, Parquet)")
    with console.status("training: retrieval sources + ranker (leak-free), and the best baseline…"):
        summary = engine.train()
    console.print("[bold]3. trained[/]")
    console.print(train_table(summary))

    users = dataset.users.column("user_id").to_pylist()
    rng = np.random.default_rng(seed)
    bundle = engine.pipeline().bundle
    counts = np.asarray(bundle.history.sum(axis=1)).ravel()
    active = [
        u for u in users if 0 <= bundle.users.get(u) < len(counts) and 5 <= counts[bundle.users.get(u)] <= 60
    ]
    console.print("[bold]4. recommendations[/] (seen items excluded; reasons from the strongest signal)")
    for user in rng.choice(active, size=min(3, len(active)), replace=False).tolist():
        console.print(recommendations_table(f"user {user}", engine.recommend(user, k=8)))
    cold = engine.recommend("new-user-1", k=5, country="US", age_bucket="25-34")
    console.print(recommendations_table("a brand-new user from the US (cold start)", cold))

    sample = rng.choice(len(users), size=min(300, len(users)), replace=False)
    ours, pop = oracle_overlap(engine, dataset, sample, k=10)
    console.print(
        f"[bold]5. against the hidden ground truth[/] ({len(sample)} users): {ours:.1%} of our top-10 are in "
        f"each user's true top-{ORACLE_K}, vs {pop:.1%} for the most-popular list"
    )
    console.print(
        f"done in {time.perf_counter() - started:.1f}s. The trained engine is in {data_dir}; try:\n"
        f"  funnel recommend --data-dir {data_dir} --user {users[0]}\n"
        f"  funnel recommend --data-dir {data_dir} --item {dataset.items.column('item_id')[0].as_py()}"
    )
    engine.close()
