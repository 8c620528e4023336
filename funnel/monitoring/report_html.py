"""The HTML page of ``funnel report``: alarms first, then one section per signal with its plots.

Plain HTML with inline CSS and the PNGs beside it (relative links): the folder can be copied or
served as it is. Values are HTML-escaped.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path

from funnel.monitoring.alarms import MonitorConfig
from funnel.monitoring.report import ReportData


def _fmt(value: float, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    return "–" if value is None or math.isnan(value) else f"{value * scale:.{digits}f}{unit}"


def _utc(ms_or_s: float, ms: bool = True) -> str:
    t = ms_or_s / 1000 if ms else ms_or_s
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, note: str | None, *parts: str) -> str:
    inner = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f"<section><h2>{html.escape(title)}</h2>{inner}{''.join(parts)}</section>"


def _img(name: str, alt: str) -> str:
    return f'<p><img src="{name}" alt="{html.escape(alt)}"></p>'


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f2f2f2}.FIRING{color:#b00;font-weight:bold}.ok{color:#070}.note{color:#666}"
    "img{max-width:100%;border:1px solid #eee}"
)


def write_report(data: ReportData, out: str | Path, config: MonitorConfig | None = None) -> Path:
    """Render ``index.html`` and the PNGs of ``data`` into ``out``; returns the HTML path."""
    from funnel.monitoring import plots

    config = config or MonitorConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    alarm_rows = [
        [a.name, a.status, _fmt(a.value), f"{a.threshold:g} {a.unit}", a.message] for a in data.alarms
    ]
    alarms = "".join(
        f'<tr><td>{html.escape(r[0])}</td><td class="{r[1]}">{r[1]}</td>'
        + "".join(f"<td>{html.escape(c)}</td>" for c in r[2:])
        + "</tr>"
        for r in alarm_rows
    )
    parts = [
        f"<h1>funnel monitoring report</h1><p>data directory <code>{html.escape(str(data.data_dir))}</code>, "
        f"generated {_utc(data.generated_at_s, ms=False)}</p>",
        "<section><h2>Alarms</h2><table><thead><tr><th>alarm</th><th>status</th><th>value</th>"
        f"<th>threshold</th><th>detail</th></tr></thead><tbody>{alarms}</tbody></table></section>",
    ]
    parts.append(_quality_html(data, out))
    parts.append(_staleness_html(data))
    if data.index_sizes:
        plots.plot_index(data.index_sizes, data.n_listed, out / "index.png")
    rows = [[k, str(v), _fmt(v / data.n_listed if data.n_listed else math.nan, digits=2)]
            for k, v in data.index_sizes.items()]  # fmt: skip
    parts.append(_section(
        "Index size vs listed catalogue", data.notes.get("index"),
        f"<p>listed items in the catalogue: {data.n_listed}</p>",
        _table(["source", "items in index", "ratio to listed"], rows) if rows else "",
        _img("index.png", "bar chart of ANN index sizes vs listed catalogue") if data.index_sizes else "",
    ))  # fmt: skip
    if data.skews:
        plots.plot_skew(data.skews, config.psi_threshold, out / "skew.png")
    rows = [
        [
            s.feature,
            _fmt(s.psi),
            _fmt(s.served_mean),
            _fmt(s.offline_mean),
            _fmt(s.mismatch_share, 100, 1, " %"),
        ]
        for s in data.skews[:20]
    ]
    parts.append(_section(
        "Training–serving skew", data.notes.get("skew"),
        _img("skew.png", "bar chart of PSI per feature") if data.skews else "",
        _table(["feature", "PSI", "served mean", "offline mean", "rows differing"], rows) if rows else "",
    ))  # fmt: skip
    page = "<!doctype html><html><head><meta charset='utf-8'><title>funnel monitoring</title>"
    page += f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _quality_html(data: ReportData, out: Path) -> str:
    from funnel.monitoring import plots

    if not data.series:
        return _section("Quality", data.notes.get("quality", "no data"))
    plots.plot_quality(data.series, data.window_h, out / "quality.png")
    plots.plot_sources(data.series, data.window_h, out / "sources.png")
    last = data.series[-1]
    summary = _table(
        ["window", "pages", "slots", "clicked slots", "CTR", "coverage", "category entropy", "exposure Gini",
         "new-item share"],
        [[f"{_utc(last.start_ms)} – {_utc(last.end_ms)}", str(last.pages), str(last.slots), str(last.clicks),
          _fmt(last.ctr, 100, 2, " %"), _fmt(last.coverage, 100, 1, " %"),
          _fmt(last.category_entropy_bits, digits=2, unit=" bits"), _fmt(last.exposure_gini),
          _fmt(last.new_item_share, 100, 1, " %")]],
    )  # fmt: skip
    sources = _table(
        ["source", "slots", "clicked slots", "CTR", "share of clicks"],
        [[k, str(v.slots), str(v.clicks), _fmt(v.ctr, 100, 2, " %"), _fmt(v.click_share, 100, 1, " %")]
         for k, v in sorted(last.sources.items(), key=lambda kv: -kv[1].clicks)],
    )  # fmt: skip
    note = (
        f"{data.unattributed_clicks} of {data.total_clicks} clicks match no logged slot (no request_id, "
        "or the impression was not logged) and are left out of CTR."
    )
    return _section(
        f"Quality (latest {data.window_h:g} h window)", note, summary,
        _img("quality.png", "quality monitors over time"), "<h3>Per-source contribution</h3>", sources,
        _img("sources.png", "per-source click share and CTR over time"),
    )  # fmt: skip


def _staleness_html(data: ReportData) -> str:
    rows = []
    c = data.consumer
    if c is not None:
        beat = (
            "never"
            if c.heartbeat_at is None
            else f"{(data.generated_at_s - c.heartbeat_at) / 60:.1f} min ago"
        )
        rows.append([f"consumer {c.group!r}", f"committed {c.committed} of {c.end} (lag {c.lag})",
                     f"heartbeat {beat}; pending events waiting {c.waiting_s / 60:.1f} min"])  # fmt: skip
    age = "–" if data.model_version is None else f"{data.model_age_h:.1f} h"
    rows.append(["live model", data.model_version or "none", f"trained {age} ago"])
    return _section("Staleness", None, _table(["what", "state", "age"], rows))
