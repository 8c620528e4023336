"""``funnel report`` on the command line: exit 0, one line per alarm, the page and its plots."""

from __future__ import annotations

from typer.testing import CliRunner

from funnel.cli import app
from tests.integration.test_monitoring_report import check_rendered, data_dir  # noqa: F401  (fixture)


def test_funnel_report_command(data_dir, tmp_path) -> None:  # noqa: F811
    path, _ = data_dir
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["report", "--data-dir", str(path), "--out", str(out), "--window-hours", "6"]
    )
    assert result.exit_code == 0, result.output
    assert "FIRING  consumer_stalled" in result.output  # the worker never consumed the logged pages
    for name in ("model_stale", "index_coverage", "feature_skew"):
        assert f"ok  {name}" in result.output, result.output
    assert f"wrote {out / 'index.html'}" in result.output
    check_rendered(out)
