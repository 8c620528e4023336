"""Experiment reports from the event log: the join of interactions to arms, direction, SRM, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from funnel.core.schema import Impression, Interaction
from funnel.events.file_log import FileEventLog
from funnel.events.memory_log import MemoryEventLog
from funnel.experiments.exposure import exposure_rows
from funnel.experiments.log_report import report_from_log
from funnel.experiments.store import FILE_NAME, ExperimentStore

T = 1_700_000_000_000
ARMS = [{"name": "A"}, {"name": "B"}]


def _record(tmp_path, name="e1", stop_at=None):
    store = ExperimentStore(tmp_path / FILE_NAME)
    store.create({"name": name, "arms": ARMS}, now_ms=T - 1)
    return store.stop(name, now_ms=stop_at) if stop_at else store.load()[name]


def test_rows_join_interactions_to_arms_by_hand(tmp_path):
    rec = _record(tmp_path, stop_at=T + 1000)
    log = MemoryEventLog()
    log.append([
        Interaction("u1", "a", "click", T - 5),  # before u1's exposure: no click, no engagement
        Impression("r1", "u1", ("a", "b", "c"), (0, 1, 2), T, experiment="e1", arm="A"),
        Impression("r2", "u2", ("a", "d"), (0, 1), T + 1, experiment="e1", arm="B"),
        Impression("r2", "u2", ("a", "d"), (0, 1), T + 1, experiment="e1", arm="B"),  # a retry: once
        Impression("r3", "u2", ("e",), (0,), T + 2, experiment="e1", arm="A"),  # u2's second arm: dropped
        Impression("r4", "u3", ("a",), (0,), T + 2, experiment="e1", arm="Z"),  # unknown arm: dropped
        Impression("r5", "u4", ("a",), (0,), T + 2, experiment="other", arm="A"),  # another experiment
        Interaction("u1", "b", "click", T + 10, request_id="r1"),  # click on r1's b
        Interaction("u1", "b", "like", T + 11),  # same slot (latest page showing b): still 1 click
        Interaction("u1", "z", "watch", T + 12),  # engagement on an item not shown: no click
        Interaction("u1", "c", "view", T + 13),  # a view is not a click
        Interaction("u2", "d", "purchase", T + 14),  # no request id: attributed to r2
        Interaction("u2", "a", "skip", T + 15),
        Interaction("u2", "a", "not_interested", T + 2000),  # after the stop: not counted
        Interaction("u4", "a", "click", T + 16),  # not in the experiment
    ])  # fmt: skip
    rows = exposure_rows(log, rec.experiment, rec.stopped_ms)
    assert rows.users == ["u1", "u2"]
    assert rows.arm.tolist() == ["A", "B"]
    assert rows.impressions.tolist() == [3, 2]
    assert rows.clicks.tolist() == [1, 1]
    assert rows.engagement.tolist() == [3, 1]
    assert rows.negatives.tolist() == [0, 1]
    assert (rows.dropped_impressions, rows.duplicate_impressions) == (2, 1)
    assert rows.items == {"A": {"a", "b", "c"}, "B": {"a", "d"}}


def _planted(n_a, n_b, ctr_a, ctr_b, seed=0, slots=10):
    """A log where each user saw one page of ``slots`` items; arm B's click rate is ``ctr_b``."""
    rng = np.random.default_rng(seed)
    log, events = MemoryEventLog(), []
    for i in range(n_a + n_b):
        arm, ctr = ("A", ctr_a) if i < n_a else ("B", ctr_b)
        user, rid, items = f"u{i}", f"r{i}", tuple(f"i{(i + k) % 50}" for k in range(slots))
        events.append(Impression(rid, user, items, tuple(range(slots)), T + i, experiment="e1", arm=arm))
        for k in np.flatnonzero(rng.random(slots) < ctr):
            events.append(Interaction(user, items[k], "click", T + i + 1, request_id=rid))
        if rng.random() < 0.1:
            events.append(Interaction(user, items[0], "skip", T + i + 2))
    log.append(events)
    return log


def test_arm_b_with_the_higher_ctr_wins_and_srm_passes(tmp_path):
    rec = _record(tmp_path)
    result = report_from_log(_planted(400, 400, 0.10, 0.20), rec, catalogue_items=100)
    report = result.report
    assert not report.srm.flagged and report.trustworthy
    a, b = report.arms
    assert (a.users, b.users, a.impressions, b.impressions) == (400, 400, 4000, 4000)
    assert 0.08 < a.ctr < 0.12 and 0.18 < b.ctr < 0.22
    ctr = report.comparisons[0].ctr
    assert ctr.diff > 0 and ctr.significant and ctr.diff_ci[0] > 0
    assert ctr.lift_ci[0] < 1.0 < ctr.lift_ci[1]  # the planted lift (+100%) is inside the interval
    assert report.comparisons[0].always_valid_p["ctr"] < 0.05
    g = {x.arm: x for x in result.guardrails}
    assert g["A"].distinct_items == 50 and g["A"].coverage == 0.5
    assert 0.05 < g["A"].negatives_per_user < 0.15 and g["B"].vs_control is not None

    text = result.format()
    assert text.index("SRM check") < text.index("impressions") < text.index("guardrails")
    assert "UNTRUSTWORTHY" not in text and "significant" in text
    payload = result.to_dict()
    assert list(payload).index("srm") < list(payload).index("arms")
    assert json.loads(json.dumps(payload))["comparisons"][0]["ctr"]["significant"] is True


def test_the_same_ctr_is_not_significant(tmp_path):
    result = report_from_log(_planted(400, 400, 0.15, 0.15, seed=3), _record(tmp_path))
    assert not result.report.comparisons[0].ctr.significant


@pytest.mark.parametrize(("n_a", "flagged"), [(5200, True), (5000, False)])
def test_srm_flags_a_planted_52_48_split(tmp_path, n_a, flagged):
    result = report_from_log(_planted(n_a, 10_000 - n_a, 0.1, 0.1, slots=1), _record(tmp_path))
    assert result.report.srm.flagged is flagged
    text = result.format()
    assert ("SAMPLE RATIO MISMATCH" in text) is flagged
    if flagged:  # the banner comes before any result
        assert text.index("SAMPLE RATIO MISMATCH") < text.index("impressions")


def test_no_exposure_yet_is_a_report_without_tests(tmp_path):
    result = report_from_log(MemoryEventLog(), _record(tmp_path))
    assert result.report is None and "no exposed users" in result.format()
    assert result.to_dict()["srm"] is None


def _main(monkeypatch, capsys, *args):
    """``funnel *args`` in process, through the console entry point: (exit code, stdout, stderr)."""
    from funnel.cli import main

    monkeypatch.setattr(sys, "argv", ["funnel", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_cli_report_beside_a_running_writer(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    _record(data)
    writer = FileEventLog(data / "events")  # holds the log's writer lock, as `funnel serve` does
    try:
        writer.append([r.event for r in _planted(30, 30, 0.1, 0.3).read(0, 10_000)])
        run = subprocess.run(
            [sys.executable, "-m", "funnel", "experiment", "report", "e1", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        writer.close()
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("experiment e1: started") and lines[2].startswith("SRM check")
    assert [line.split()[:2] for line in lines[5:7]] == [["A", "30"], ["B", "30"]]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    _record(tmp_path)
    code, out, err = _main(monkeypatch, capsys, "experiment", "report", "nope", "--data-dir", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [f"error: no experiment 'nope' in {tmp_path} (experiments: e1)"]
    code, _, err = _main(
        monkeypatch, capsys, "experiment", "report", "e1", "--data-dir", str(tmp_path / "no")
    )
    assert code == 2 and err.strip().splitlines() == [
        f"error: data directory {tmp_path / 'no'} does not exist"
    ]
    code, out, _ = _main(
        monkeypatch, capsys, "experiment", "report", "e1", "--data-dir", str(tmp_path), "--json"
    )
    assert code == 0 and json.loads(out)["experiment"] == "e1"  # no events logged yet: an empty report
    assert json.loads(out)["srm"] is None
