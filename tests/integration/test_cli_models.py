"""``funnel train`` with the gate and ``funnel models …``: output and exit codes (0 / 1 / 2).

``funnel.cli.main`` runs in process (argv patched: a subprocess costs seconds of imports), so
errors go through the same mapping to one line and an exit code as on the command line.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from cli_inprocess import run_cli as run

from funnel.engine import Engine

T0 = 1_700_000_000
EVENTS = pa.table(
    {"user_id": ["u1", "u1", "u2", "u2", "u3", "u3"], "item_id": ["a", "b", "a", "c", "b", "c"],
     "timestamp": [T0 + n for n in range(6)]}
)  # fmt: skip


@pytest.fixture
def data_dir(tmp_path):
    """v1 live (pop), v2 rejected by the gate (no events after v1's data to compare on)."""
    engine = Engine(tmp_path / "d")
    engine.import_interactions(EVENTS)
    engine.train(model="pop")
    assert engine.train(model="itemknn").status == "rejected"
    engine.close()
    return tmp_path / "d"


def test_models_commands_and_their_exit_codes(data_dir, tmp_path, monkeypatch, capsys):
    d = ["--data-dir", str(data_dir)]
    code, out, _ = run(monkeypatch, capsys, "models", "list", *d, "--json")
    assert code == 0
    listed = json.loads(out)
    v1, v2 = (m["version"] for m in listed["versions"])
    assert listed["live"] == v1 and [m["status"] for m in listed["versions"]] == ["live", "rejected"]
    code, out, _ = run(monkeypatch, capsys, "models", "list", *d)
    assert code == 0 and "rejected" in out and "only 0 user(s)" in out

    bad = [  # (argv, what the one line must say)
        (["models", "show", "nope", *d], "not found; known versions"),
        (["models", "show", "../etc", *d], "not a version name"),
        (["models", "promote", v2, *d], "rejected by the gate"),
        (["models", "list", "--data-dir", str(tmp_path / "absent")], "no models in"),
    ]
    for argv, says in bad:
        code, _, err = run(monkeypatch, capsys, *argv)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert run(monkeypatch, capsys, "models", "show", *d)[0] == 2  # missing VERSION: usage error

    code, out, _ = run(monkeypatch, capsys, "models", "show", v2, *d)
    assert code == 0 and "rejected" in out and "config hash" in out and "gate FAILED" in out
    code, out, _ = run(monkeypatch, capsys, "models", "promote", v2, "--force", *d)
    assert code == 0 and f"{v2} is live (was {v1})" in out
    code, out, _ = run(monkeypatch, capsys, "models", "rollback", *d)
    assert code == 0 and f"{v1} is live (was {v2})" in out
    code, _, err = run(monkeypatch, capsys, "models", "rollback", *d)
    assert code == 1 and "nothing to roll back to" in err  # a state conflict, not bad input
    assert Engine(data_dir).model_version == v1


def test_train_prints_the_summary_and_the_gate_decision(tmp_path, monkeypatch, capsys):
    engine = Engine(tmp_path / "d")
    engine.import_interactions(EVENTS)
    engine.close()
    argv = ["train", "--data-dir", str(tmp_path / "d"), "--model", "pop"]
    code, out, err = run(monkeypatch, capsys, *argv)
    assert code == 0, err
    assert "now live" in out and "gate passed" in out and "cold_users" in out
    code, out, err = run(monkeypatch, capsys, *argv)
    assert code == 0, err
    assert "REJECTED by the gate" in out and "gate FAILED" in out
    assert "funnel models promote" in out  # how to override
    code, _, err = run(monkeypatch, capsys, *argv, "--tolerance", "2")
    assert code == 2 and "--tolerance" in err
