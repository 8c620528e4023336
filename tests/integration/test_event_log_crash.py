"""Crash safety of the file:// event log: SIGKILL a writer mid-stream, reopen, check every ack.

The writer runs in a subprocess and prints each acknowledged offset range only after ``append``
returned. SIGKILL does not lose the page cache, so the deterministic tests below also write torn
records by hand, the state a power cut can leave behind.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from funnel.core.schema import Impression, Interaction
from funnel.events.dedup import id_hash
from funnel.events.file_log import FileEventLog
from funnel.events.protocol import event_json
from funnel.events.segment import encode_batch

REPO = Path(__file__).resolve().parents[2]
SEGMENT_BYTES = 64 * 1024  # small, so that the writer rolls segments while being killed
BATCH = 20


def make_event(i: int) -> Interaction | Impression:
    """The i-th event of the deterministic stream (its offset too: the stream has no duplicates)."""
    if i % 10 == 9:
        return Impression(f"r{i}", f"u{i % 13}", (f"i{i}", f"i{i + 1}"), (0, 1), 1_700_000_000_000 + i)
    event_id = f"e{i}" if i % 3 else None
    return Interaction(f"u{i % 13}", f"i{i % 101}", "watch", 1_700_000_000_000 + i, value=i / 7,
                       event_id=event_id, context={"i": str(i)})  # fmt: skip


WRITER = f"""
import sys
from funnel.core.schema import Impression, Interaction
from funnel.events.file_log import FileEventLog
{inspect.getsource(make_event)}
log = FileEventLog(sys.argv[1], segment_bytes={SEGMENT_BYTES})
k = log.end_offset
while True:
    offsets = log.append([make_event(i) for i in range(k, k + {BATCH})])
    sys.stdout.write(f"{{offsets[0]}} {{offsets[-1]}}\\n")
    sys.stdout.flush()
    k += {BATCH}
"""


def run_and_kill(path: Path, acks_before_kill: int) -> list[tuple[int, int]]:
    """Start a writer, SIGKILL it after ``acks_before_kill`` acks; return every ack it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    acks: list[tuple[int, int]] = []
    buf = b""
    deadline = time.monotonic() + 60
    try:
        while len(acks) < acks_before_kill:
            assert time.monotonic() < deadline, "the writer is too slow"
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            assert chunk, f"the writer died: {proc.stderr.read().decode()}"  # type: ignore[union-attr]
            buf += chunk
            *lines, buf = buf.split(b"\n")
            acks += [tuple(map(int, line.split())) for line in lines]  # type: ignore[misc]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        rest, _ = proc.communicate(timeout=30)
    acks += [tuple(map(int, line.split())) for line in (buf + rest).split(b"\n") if line.strip()]  # type: ignore[misc]
    assert proc.returncode == -signal.SIGKILL
    return acks


def test_sigkilled_writer_loses_no_acknowledged_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    acked_end = 0
    for round_, kill_after in enumerate((150, 300)):  # two crash/recover cycles on the same log
        acks = run_and_kill(tmp_path, kill_after)
        assert acks[0][0] == acked_end and len(acks) >= kill_after
        for (a, b), (c, _) in itertools.pairwise(acks):
            assert b - a == BATCH - 1 and c == b + 1  # contiguous, monotonic offsets
        acked_end = acks[-1][1] + 1
        with caplog.at_level(logging.WARNING), FileEventLog(tmp_path, segment_bytes=SEGMENT_BYTES) as log:
            end = log.end_offset
            assert end >= acked_end  # everything acknowledged is there (maybe one more unacked batch)
            assert (end - acks[0][0]) % BATCH == 0  # SIGKILL keeps the page cache: whole batches only
            records = log.read(0, end + 10)
            assert [r.offset for r in records] == list(range(end))
            for r in records:
                assert r.event == make_event(r.offset), r.offset
            assert log.append([make_event(1)]).tolist() == [1]  # dedup state survived the crash
            acked_end = end
        assert len(list(tmp_path.glob("*.log"))) > round_ + 1
    caplog.clear()
    with caplog.at_level(logging.WARNING), FileEventLog(tmp_path, segment_bytes=SEGMENT_BYTES) as log:
        assert log.end_offset == acked_end
        assert log.append([make_event(acked_end)]).tolist() == [acked_end]  # appends resume
    assert "truncating" not in caplog.text  # the recovered tail is clean


def test_half_a_record_by_hand_is_truncated_and_appends_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FileEventLog(tmp_path) as log:
        log.append([make_event(i) for i in range(40)])
    segment = sorted(tmp_path.glob("*.log"))[-1]
    size = segment.stat().st_size
    record, _ = encode_batch([event_json(make_event(40))], [id_hash("e40")])
    with open(segment, "ab") as fh:
        fh.write(record[: len(record) // 2])  # the first half of record 40: header and part of the JSON
    with caplog.at_level(logging.WARNING), FileEventLog(tmp_path) as log:
        assert f"at byte {size}" in caplog.text
        assert segment.stat().st_size == size
        assert log.end_offset == 40
        assert log.append([make_event(40)]).tolist() == [40]
        assert log.read(40, 5)[0].event == make_event(40)


def test_partially_persisted_batch_keeps_its_whole_records_and_a_retry_dedups(tmp_path: Path) -> None:
    """A batch cut mid-write (never acknowledged) may leave whole records; the client's retry,
    carrying the same event ids, is deduplicated against them."""
    with FileEventLog(tmp_path) as log:
        log.append([make_event(i) for i in range(10)])
    batch = [Interaction(f"u{k}", "x", "click", 1_700_000_000_000, event_id=f"retry-{k}") for k in range(5)]
    blob, starts = encode_batch([event_json(e) for e in batch], [id_hash(f"retry-{k}") for k in range(5)])
    segment = sorted(tmp_path.glob("*.log"))[-1]
    with open(segment, "ab") as fh:
        fh.write(blob[: starts[2] + 10])  # two whole records and a torn third
    with FileEventLog(tmp_path) as log:
        assert log.end_offset == 12
        assert log.append(batch).tolist() == [10, 11, 12, 13, 14]
        assert [r.event for r in log.read(10, 10)] == batch
