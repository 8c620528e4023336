"""Rich tables the CLI prints: evaluation results, training summaries, recommendations."""

from __future__ import annotations

from typing import Any

from rich.table import Table

METRIC_COLUMNS = ("ndcg", "recall", "precision", "map", "mrr", "coverage", "novelty", "diversity")


def evaluation_table(result: dict[str, Any], n_users: int | None = None) -> Table:
    """One row per model with every metric at k and the fit time (``evaluate`` JSON shape)."""
    k = result.get("k")
    title = f"{result.get('dataset', '')} · protocol {result.get('protocol')} · k={k}"
    if n_users is not None:
        title += f" · {n_users} test users"
    table = Table(title=title)
    table.add_column("model")
    present = [m for m in METRIC_COLUMNS if any(m in r for r in result["results"].values())]
    for metric in present:
        table.add_column(
            f"{metric}@{k}" if metric not in ("coverage", "novelty", "diversity") else metric, justify="right"
        )
    table.add_column("fit s", justify="right")
    for name, row in result["results"].items():
        table.add_row(name, *(f"{row[m]:.4f}" for m in present), f"{row.get('fit_seconds', 0.0):.2f}")
    return table


def train_table(summary: Any) -> Table:
    """The model-selection table of a training run and the version made live."""
    table = Table(
        title=f"trained {summary.model} → version {summary.version} "
        f"({summary.n_interactions} interactions, {summary.n_users} users, {summary.n_items} items, "
        f"{summary.seconds:.1f}s)"
    )
    table.add_column("candidate")
    table.add_column(f"ndcg ({summary.protocol or 'no selection'})", justify="right")
    table.add_column("recall", justify="right")
    table.add_column("coverage", justify="right")
    table.add_column("chosen")
    for name, row in summary.selection.items():
        table.add_row(
            name,
            f"{row['ndcg']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['coverage']:.4f}",
            "✓" if name == summary.model else "",
        )
    if not summary.selection:
        table.add_row(summary.model, "-", "-", "-", "✓ (named)")
    ranking = getattr(summary, "ranking", None) or {}
    if "skipped" in ranking and isinstance(ranking["skipped"], str):
        table.caption = f"ranking pipeline not trained: {ranking['skipped']}"
    elif ranking:
        heads = ", ".join(f"{h} AUC {a:.3f}" for h, a in ranking.get("auc", {}).items())
        table.caption = (
            f"serving: retrieval + ranker ({heads}); validation NDCG@10 {ranking.get('ndcg@10_final')} vs "
            f"retrieval order {ranking.get('ndcg@10_retrieval')} (lift {ranking.get('lift')}); "
            f"{summary.model} is the fallback"
        )
    return table


def recommendations_table(title: str, recs: list[Any]) -> Table:
    """A ranked list: position, item id, title, score and reason."""
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("title")
    table.add_column("score", justify="right")
    table.add_column("reason")
    for pos, rec in enumerate(recs, 1):
        table.add_row(str(pos), rec.item_id, rec.title or "", f"{rec.score:.3f}", rec.reason)
    return table


def retrieval_table(result: dict[str, Any]) -> Table:
    """Recall@K of every retrieval source and of the merged candidates (``--stage retrieval``)."""
    results = result["results"]
    ks = sorted({key for row in results.values() for key in row}, key=lambda c: int(c.split("@")[1]))
    table = Table(
        title=f"{result.get('dataset', '')} · retrieval · protocol {result.get('protocol')} · "
        f"{result.get('n_users', '?')} test users"
    )
    table.add_column("source")
    for key in ks:
        table.add_column(key, justify="right")
    for name, row in results.items():
        table.add_row(name, *(f"{row[key]:.4f}" for key in ks), style="bold" if name == "merged" else None)
    return table
