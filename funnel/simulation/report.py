"""The simulation's report: daily metrics per scenario as PNG plots and an HTML page.

``funnel report --simulation DIR/simulation --out R`` (:func:`build_simulation_report`) reads
``simulation.json`` (:mod:`funnel.simulation.io`) and writes into ``R``:

- ``sim_daily.png``: every daily metric over the simulated days, one line per scenario;
- ``sim_tradeoff.png``: per scenario, run-mean CTR against coverage, category entropy and the
  new-item click share (the exploration trade-off, scenarios side by side);
- ``index.html``: the scenarios' settings and summaries as a table, and the two plots.

Example:
    >>> import tempfile
    >>> from funnel.simulation.config import Scenario, SimConfig
    >>> from funnel.simulation.io import write_simulation
    >>> from funnel.simulation.runner import SimResult
    >>> day = {"day": 0, "ctr": 0.1, "coverage": 0.5, "category_entropy": 2.0, "new_item_click_share": 0.1}
    >>> r = SimResult(Scenario(), [day], {"ctr": 0.1})
    >>> folder = write_simulation(tempfile.mkdtemp(), SimConfig(users=10, days=1), [r])
    >>> build_simulation_report(folder, tempfile.mkdtemp()).name
    'index.html'
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from funnel.simulation.io import read_simulation

PANELS = (
    ("ctr", "CTR", "%", 100.0),
    ("engagement", "Clicks per active user", "clicks", 1.0),
    ("retention", "Retention", "% of arrived users", 100.0),
    ("coverage", "Catalogue coverage", "% of available items", 100.0),
    ("category_entropy", "Category entropy of pages", "bits", 1.0),
    ("exposure_gini", "Exposure Gini", "Gini", 1.0),
    ("new_item_click_share", "Clicks on items < 7 days old", "%", 100.0),
    ("hours_to_100", "New items: hours to 100 impressions", "hours (median)", 1.0),
    ("regret", "Regret vs the oracle", "expected clicks / page", 1.0),
)
"""Daily metric, title, unit, scale (shares drawn in percent)."""
TRADEOFF = (
    ("coverage", "coverage (%)", 100.0),
    ("category_entropy", "category entropy (bits)", 1.0),
    ("new_item_click_share", "clicks on new items (%)", 100.0),
)


def _series(days: list[dict[str, Any]], key: str, scale: float) -> tuple[list[int], list[float]]:
    xs = [d["day"] for d in days]
    ys = [d[key] * scale if d.get(key) is not None else math.nan for d in days]
    return xs, ys


def _mean(days: list[dict[str, Any]], key: str) -> float:
    vals = [d[key] for d in days if d.get(key) is not None]
    return sum(vals) / len(vals) if vals else math.nan


def plot_daily(doc: dict[str, Any], path: Path) -> Path:
    """Every daily metric, one panel each, one line per scenario."""
    cols = 3
    rows = math.ceil(len(PANELS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title, unit, scale) in zip(axes.ravel(), PANELS, strict=False):
        for j, (name, sc) in enumerate(doc["scenarios"].items()):
            xs, ys = _series(sc["days"], key, scale)
            ax.plot(xs, ys, marker="o", markersize=2, label=name, color=f"C{j}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("simulated day")
        ax.set_ylabel(unit)
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(PANELS) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_tradeoff(doc: dict[str, Any], path: Path) -> Path:
    """Run-mean CTR against coverage, entropy and new-item clicks, one point per scenario."""
    fig, axes = plt.subplots(1, len(TRADEOFF), figsize=(5 * len(TRADEOFF), 3.8))
    for ax, (key, label, scale) in zip(axes, TRADEOFF, strict=True):
        for j, (name, sc) in enumerate(doc["scenarios"].items()):
            x, y = _mean(sc["days"], key) * scale, _mean(sc["days"], "ctr") * 100.0
            ax.scatter([x], [y], color=f"C{j}")
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("CTR (%)")
        ax.set_title(f"CTR vs {label.split(' (')[0]}", fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def build_simulation_report(folder: str | Path, out: str | Path) -> Path:
    """Write the plots and ``index.html`` of the simulation in ``folder`` into ``out``."""
    doc = read_simulation(folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_daily(doc, out / "sim_daily.png")
    plot_tradeoff(doc, out / "sim_tradeoff.png")
    keys = list(dict.fromkeys(k for sc in doc["scenarios"].values() for k in sc["summary"]))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["scenario", *keys])
    body = "".join(
        "<tr>"
        + f"<td>{html.escape(name)}</td>"
        + "".join(f"<td>{_cell(sc['summary'].get(k))}</td>" for k in keys)
        + "</tr>"
        for name, sc in doc["scenarios"].items()
    )
    cfg = html.escape(", ".join(f"{k}={v}" for k, v in doc["config"].items()))
    page = (
        "<!doctype html><meta charset='utf-8'><title>funnel simulation</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}</style>"
        f"<h1>Closed-loop simulation</h1><p>{cfg}</p><table><tr>{head}</tr>{body}</table>"
        "<h2>Daily metrics</h2><img src='sim_daily.png'><h2>Trade-off</h2><img src='sim_tradeoff.png'>"
    )
    path = out / "index.html"
    path.write_text(page)
    return path
