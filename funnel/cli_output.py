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
    """The model-selection table of a training run, the version it wrote and what the gate made of it."""
    status = getattr(summary, "status", "live")
    verdict = {"live": "now live", "rejected": "REJECTED by the gate, not live"}.get(status, status)
    table = Table(
        title=f"trained {summary.model} → version {summary.version}, {verdict} "
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


def _when(ms: Any) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM`` UTC (``-`` when unknown)."""
    import datetime as dt

    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def gate_table(gate: dict[str, Any]) -> Table:
    """The gate's checks: candidate value, live value, threshold, pass/fail (``GateReport.to_dict``)."""
    verdict = "passed" if gate.get("passed") else "FAILED"
    if gate.get("forced"):
        verdict += " (promoted anyway: forced)"
    window = gate.get("window") or {}
    where = (
        f"held-out window after {_when(window.get('start_ms'))} UTC: {window.get('n_users')} users, "
        f"{window.get('n_events')} events"
        if window
        else "no window (first version: guardrails on its own lists)"
    )
    table = Table(title=f"gate {verdict} · k={gate.get('k')} · {where} · {gate.get('seconds', 0):.1f}s")
    table.add_column("check")
    table.add_column("candidate", justify="right")
    table.add_column(f"live {gate.get('live_version') or ''}".strip(), justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("result")
    for c in gate.get("checks", []):
        result = "ok" if c["passed"] else "FAIL: " + c["detail"]
        if c["passed"] and c.get("detail"):
            result = f"ok ({c['detail']})"
        table.add_row(c["name"], _num(c.get("value")), _num(c.get("live")), _num(c.get("threshold")), result)
    return table


def models_table(manifests: list[Any], previous: str | None = None) -> Table:
    """One row per version (``ModelManifest``): status, model, data window, gate NDCG, parent, reason."""
    table = Table(title="model versions (oldest first)")
    for col in ("version", "status", "model", "trained (UTC)", "data until", "ndcg", "parent", "reason"):
        table.add_column(col, justify="right" if col == "ndcg" else "left")
    for m in manifests:
        gate = m.metrics.get("gate") or {}
        ndcg = (gate.get("candidate") or {}).get("ndcg")
        status = m.status + (" (rollback target)" if m.version == previous else "")
        table.add_row(
            m.version, status, m.model, _when(m.created_at_ms), _when(m.data_window.end_ms), _num(ndcg),
            m.parent_version or "-", m.reason or "",
            style="bold" if m.status == "live" else ("dim" if m.status == "rejected" else None),
        )  # fmt: skip
    return table


def manifest_table(m: Any) -> Table:
    """One version's manifest (``ModelManifest``) as field / value rows."""
    table = Table(title=f"model version {m.version}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    w = m.data_window
    rows = [
        ("status", m.status + (f" — {m.reason}" if m.reason else "")),
        ("model", m.model),
        ("parent version", m.parent_version or "- (first)"),
        ("trained", f"{_when(m.created_at_ms)} UTC"),
        ("data window", f"{_when(w.start_ms)} .. {_when(w.end_ms)} UTC, {w.n_interactions} interactions"),
        ("event-log offset", str(w.log_offset)),
        ("users × items", f"{m.n_users} × {m.n_items}"),
        ("config hash", m.config_hash),
        ("feature version", m.feature_version),
        ("package version", m.package_version),
        ("format version", str(m.format_version)),
    ]
    for field, value in rows:
        table.add_row(field, value)
    return table
