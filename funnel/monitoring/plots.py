"""The report's plots (matplotlib, Agg backend: no display needed): one PNG per signal.

Every plot has a title, axis labels with units and UTC dates on time axes; shares are drawn in
percent. Each function writes ``path`` and returns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from funnel.monitoring.quality import QualitySnapshot
from funnel.monitoring.skew import FeatureSkew

DPI = 100
_PANELS = (
    ("ctr", "Click-through rate", "CTR (%)", 100.0),
    ("coverage", "Catalogue coverage", "listed items served (%)", 100.0),
    ("category_entropy_bits", "Category entropy of served pages", "entropy (bits)", 1.0),
    ("exposure_gini", "Exposure Gini over listed items", "Gini (0 = equal)", 1.0),
    ("new_item_share", "New-item exposure share", "slots with new items (%)", 100.0),
)


def _times(series: Sequence[QualitySnapshot]) -> list[datetime]:
    return [datetime.fromtimestamp(s.end_ms / 1000, tz=UTC) for s in series]


def _time_axis(ax: plt.Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlabel("window end (UTC)")
    ax.grid(True, alpha=0.3)


def plot_quality(series: Sequence[QualitySnapshot], window_h: float, path: str | Path) -> Path:
    """The five quality monitors over time, one panel each."""
    fig, axes = plt.subplots(len(_PANELS), 1, figsize=(10, 2.6 * len(_PANELS)), sharex=True)
    times = _times(series)
    for ax, (attr, title, ylabel, scale) in zip(axes, _PANELS, strict=True):
        values = [getattr(s, attr) * scale for s in series]
        ax.plot(times, values, marker="o" if len(series) < 30 else None, markersize=3, color="tab:blue")
        ax.set_title(f"{title} (sliding {window_h:g} h window)", fontsize=11)
        ax.set_ylabel(ylabel)
        _time_axis(ax)
        ax.label_outer()
    fig.tight_layout()
    return _save(fig, path)


def plot_sources(series: Sequence[QualitySnapshot], window_h: float, path: str | Path) -> Path:
    """Per source: share of clicked slots (stacked) and CTR, over time."""
    names = sorted({name for s in series for name in s.sources})
    times = _times(series)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    shares = [[100.0 * s.sources[n].click_share if n in s.sources else 0.0 for s in series] for n in names]
    if names:
        top.stackplot(times, shares, labels=names, alpha=0.85)
    top.set_title(f"Contribution to clicks by source (sliding {window_h:g} h window)", fontsize=11)
    top.set_ylabel("share of clicked slots (%)")
    top.set_ylim(0, 100)
    for name in names:
        ctrs = [100.0 * s.sources[name].ctr if name in s.sources else math.nan for s in series]
        bottom.plot(times, ctrs, marker="o" if len(series) < 30 else None, markersize=3, label=name)
    bottom.set_title("CTR by source", fontsize=11)
    bottom.set_ylabel("CTR (%)")
    for ax in (top, bottom):
        _time_axis(ax)
        ax.label_outer()
    if names:
        top.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, title="source")
    fig.tight_layout()
    return _save(fig, path)


def plot_skew(skews: Sequence[FeatureSkew], threshold: float, path: str | Path, top: int = 20) -> Path:
    """PSI per feature (the ``top`` largest), with the alarm threshold."""
    valid = [s for s in skews if not math.isnan(s.psi)]
    shown = valid[:top][::-1]
    fig, ax = plt.subplots(figsize=(10, 0.35 * max(len(shown), 4) + 1.8))
    colors = ["tab:red" if s.psi > threshold else "tab:blue" for s in shown]
    ax.barh([s.feature for s in shown], [s.psi for s in shown], color=colors, label="PSI")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"alarm threshold {threshold:g}")
    worst = max((s.psi for s in valid), default=0.0)
    ax.set_xlim(0, max(1.5 * threshold, 1.1 * worst))
    ax.set_title(
        "Training-serving skew: PSI of served vs offline-recomputed features\n"
        f"max PSI {worst:.3f} over {len(valid)} features; the {len(shown)} largest shown",
        fontsize=11,
    )
    ax.set_xlabel("population stability index (PSI, unitless)")
    ax.set_ylabel("feature")
    ax.legend(loc="lower right", framealpha=0.9)  # the largest bars are at the top
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_index(sizes: Mapping[str, int], n_listed: int, path: str | Path) -> Path:
    """Items per ANN index beside the listed catalogue size."""
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(sizes)
    ax.bar(names, [sizes[n] for n in names], color="tab:blue", label="items in index", width=0.5)
    ax.axhline(n_listed, color="tab:green", linestyle="--", label=f"listed catalogue ({n_listed})")
    ax.set_ylim(0, 1.3 * max([n_listed, *sizes.values(), 1]))
    ax.set_xlim(-0.75, len(names) - 0.25)
    ax.set_title("ANN index size vs listed catalogue", fontsize=11)
    ax.set_xlabel("retrieval source")
    ax.set_ylabel("items")
    ax.legend(loc="upper right", ncol=2)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
