"""``funnel`` run in the test process (for CLI tests that need no subprocess)."""

from __future__ import annotations

import sys

import pytest

from funnel.cli import main


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``funnel ARGS`` in process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["funnel", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
