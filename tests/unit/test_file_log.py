"""FileEventLog specifics: segments, torn tails, corruption, the writer lock, versions, dedup state."""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from funnel.core.errors import ConfigError, ConflictError, CorruptDataError, UnavailableError
from funnel.core.schema import Interaction
from funnel.events import dedup, file_log
from funnel.events.dedup import DedupIndex
from funnel.events.file_log import FileEventLog
from funnel.events.memory_log import MemoryEventLog
from funnel.events.registry import open_event_log
from funnel.events.segment import RECORD_HEADER, SEGMENT_HEADER, encode_batch, segment_header

T0 = 1_700_000_000_000


def click(k: int, event_id: str | None = None) -> Interaction:
    return Interaction(f"u{k % 5}", f"i{k}", "click", T0 + k, event_id=event_id, context={"k": str(k)})


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("*.log"))


def fill(log: FileEventLog, n: int, batch: int = 10, ids: bool = True) -> None:
    for start in range(0, n, batch):
        log.append([click(k, f"e{k}" if ids else None) for k in range(start, min(n, start + batch))])


def test_segments_roll_over_and_are_named_by_base_offset(tmp_path: Path) -> None:
    with FileEventLog(tmp_path, segment_bytes=4096) as log:
        fill(log, 300)
        files = segments(tmp_path)
        assert len(files) > 3
        bases = [int(p.stem) for p in files]
        assert bases[0] == 0 and bases == sorted(bases)
        assert all(p.stat().st_size <= 4096 for p in files)
        for base in bases[1:]:  # a segment starts exactly where the previous one ended
            assert log.read(base, 1)[0].event == click(base, f"e{base}")
        assert [r.event for r in log.read(0, 1000)] == [click(k, f"e{k}") for k in range(300)]
    with FileEventLog(tmp_path, segment_bytes=4096) as log:
        assert log.end_offset == 300
        assert log.read(bases[2] - 1, 2)[1].offset == bases[2]


def test_a_batch_bigger_than_a_segment_stays_whole(tmp_path: Path) -> None:
    with FileEventLog(tmp_path, segment_bytes=4096) as log:
        log.append([click(0)])
        log.append([click(k) for k in range(1, 200)])  # ~30 KB in one write, in its own segment
        assert [int(p.stem) for p in segments(tmp_path)] == [0, 1]
        assert log.append([click(200)]).tolist() == [200]
        assert [int(p.stem) for p in segments(tmp_path)] == [0, 1, 200]


def test_torn_tail_is_truncated_and_appends_resume(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with FileEventLog(tmp_path) as log:
        fill(log, 20)
    seg = segments(tmp_path)[-1]
    good = seg.stat().st_size
    blob, _ = encode_batch(['{"kind":"interaction","junk":"' + "x" * 50 + '"}'], [0])
    with open(seg, "ab") as fh:
        fh.write(blob[: len(blob) // 2])  # half a record: a crash mid-write
    with caplog.at_level(logging.WARNING, logger="funnel.events.file_log"), FileEventLog(tmp_path) as log:
        assert f"at byte {good}" in caplog.text and "truncating" in caplog.text
        assert seg.stat().st_size == good
        assert log.end_offset == 20
        assert log.append([click(20, "e20"), click(3, "e3")]).tolist() == [20, 3]
        assert log.read(19, 5)[1].event == click(20, "e20")
    with FileEventLog(tmp_path) as log:
        assert log.end_offset == 21


@pytest.mark.parametrize("damage", ["crc", "zeros", "short-header", "huge-length"])
def test_corrupt_tail_forms_are_truncated(tmp_path: Path, damage: str) -> None:
    with FileEventLog(tmp_path) as log:
        fill(log, 10)
    seg = segments(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    pos = SEGMENT_HEADER.size
    for _ in range(9):  # walk to the start of the 10th record
        pos += RECORD_HEADER.size + RECORD_HEADER.unpack_from(data, pos)[0]
    if damage == "crc":
        data[-3] ^= 0xFF  # the last record's payload: CRC mismatch
        expected_end = 9
    elif damage == "zeros":
        data += bytes(4096)  # the file system extended the file but the data never landed
        pos, expected_end = len(data) - 4096, 10
    elif damage == "short-header":
        data += b"\x07\x00"
        pos, expected_end = len(data) - 2, 10
    else:
        data += RECORD_HEADER.pack(1 << 30, 0, 0)
        pos, expected_end = len(data) - RECORD_HEADER.size, 10
    seg.write_bytes(bytes(data))
    with FileEventLog(tmp_path) as log:
        assert log.end_offset == expected_end
        assert seg.stat().st_size == pos
        assert log.append([click(50)]).tolist() == [expected_end]


def test_corruption_before_the_last_segment_raises(tmp_path: Path) -> None:
    with FileEventLog(tmp_path, segment_bytes=4096) as log:
        fill(log, 100)
    first = segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[SEGMENT_HEADER.size + RECORD_HEADER.size + 5] ^= 0x01  # a payload byte of the first record
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"CRC mismatch at byte 16 \(not the log's tail\)"):
        FileEventLog(tmp_path, segment_bytes=4096)
    first.write_bytes(bytes(data[: SEGMENT_HEADER.size]))
    with pytest.raises(CorruptDataError, match="starts at offset"):  # now a gap in the offsets
        FileEventLog(tmp_path, segment_bytes=4096)


def test_a_missing_segment_is_a_gap(tmp_path: Path) -> None:
    with FileEventLog(tmp_path, segment_bytes=4096) as log:
        fill(log, 100)
    segments(tmp_path)[1].unlink()
    with pytest.raises(CorruptDataError, match="expected"):
        FileEventLog(tmp_path)


def test_torn_header_of_a_fresh_last_segment_is_rewritten(tmp_path: Path) -> None:
    with FileEventLog(tmp_path) as log:
        fill(log, 10)
    (tmp_path / "00000000000000000010.log").write_bytes(segment_header(10)[:5])  # crash while rolling
    with FileEventLog(tmp_path) as log:
        assert log.end_offset == 10
        assert log.append([click(10)]).tolist() == [10]
        assert log.read(9, 5)[1].event == click(10)


def test_second_writer_is_refused(tmp_path: Path) -> None:
    log = FileEventLog(tmp_path)
    with pytest.raises(ConflictError, match="already open for writing"):
        FileEventLog(tmp_path)
    code = f"from funnel.events.file_log import FileEventLog\nFileEventLog({str(tmp_path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "ConflictError" in proc.stderr
    log.close()
    FileEventLog(tmp_path).close()  # released on close


def test_format_version_is_checked(tmp_path: Path) -> None:
    FileEventLog(tmp_path).close()
    meta = json.loads((tmp_path / "log.json").read_text())
    assert meta == {"format": "funnel-event-log", "format_version": 1}
    (tmp_path / "log.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ConflictError, match="version 99"):
        FileEventLog(tmp_path)
    (tmp_path / "log.json").write_text("{not json")
    with pytest.raises(CorruptDataError):
        FileEventLog(tmp_path)
    (tmp_path / "log.json").unlink()
    with pytest.raises(CorruptDataError, match=r"no log\.json"):
        FileEventLog(tmp_path)


def test_segment_header_version_is_checked(tmp_path: Path) -> None:
    with FileEventLog(tmp_path) as log:
        fill(log, 3)
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[6] = 2  # u16 version right after the magic
    seg.write_bytes(bytes(data))
    with pytest.raises(ConflictError, match="segment version 2"):
        FileEventLog(tmp_path)


def test_dedup_survives_reopen_across_segments(tmp_path: Path) -> None:
    with FileEventLog(tmp_path, segment_bytes=4096) as log:
        fill(log, 200)
        log.commit("g", 150)
    with FileEventLog(tmp_path, segment_bytes=4096) as log:
        again = log.append([click(k, f"e{k}") for k in (0, 57, 199)] + [click(300, "e300")])
        assert again.tolist() == [0, 57, 199, 200]
        assert log.committed("g") == 150
    assert json.loads((tmp_path / "offsets.json").read_text()) == {"g": 150}


def test_dedup_is_exact_under_hash_collisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "id_hash", lambda event_id: 42)  # every id collides
    with FileEventLog(tmp_path) as log:
        assert log.append([click(0, "a"), click(1, "b"), click(2, "a")]).tolist() == [0, 1, 0]
    with FileEventLog(tmp_path) as log:
        assert log.append([click(3, "c"), click(4, "b")]).tolist() == [2, 1]
        assert log.append([click(k, f"x{k}") for k in range(5)] + [click(9, "a")]).tolist() == [
            3,
            4,
            5,
            6,
            7,
            0,
        ]
        assert log.append([click(k, f"x{k}") for k in range(5)]).tolist() == [3, 4, 5, 6, 7]


def test_dedup_index_merges_and_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "RECENT_MAX", 8)
    index = DedupIndex()
    for k in range(50):
        index.add([k + 1], [k])
    assert len(index) == 50 and len(index._keys) >= 48
    assert index.find([1, 50, 51, 0], end_offset=50) == {0: [0], 1: [49]}
    index = DedupIndex()
    index.add([7, 7, 8], [0, 1, 2])  # a collision mid-batch, then another id
    assert index.find([7, 8], end_offset=3) == {0: [0, 1], 1: [2]}
    log = MemoryEventLog(dedup_window=10)
    log.append([click(k, f"e{k}") for k in range(30)])
    assert log.append([click(0, "e0"), click(25, "e25")]).tolist() == [30, 25]  # e0 fell out


def test_write_failure_poisons_the_log_and_leaves_no_partial_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = FileEventLog(tmp_path)
    fill(log, 5)

    def disk_full(fd: int, data: bytes) -> None:
        import os

        os.write(fd, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_log, "write_all", disk_full)
    with pytest.raises(UnavailableError, match="No space left"):
        log.append([click(5)])
    monkeypatch.undo()
    with pytest.raises(UnavailableError, match="reopen"):
        log.append([click(5)])
    assert log.end_offset == 5 and len(log.read(0, 10)) == 5
    log.close()
    with FileEventLog(tmp_path) as log:
        assert log.append([click(5)]).tolist() == [5]


def test_unusable_directory_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UnavailableError, match="cannot open"):
        FileEventLog(tmp_path / "file" / "log")


def test_a_forgotten_log_releases_its_lock(tmp_path: Path) -> None:
    FileEventLog(tmp_path).append([click(1)])  # never closed, garbage-collected
    with FileEventLog(tmp_path) as log:
        assert log.end_offset == 1


def test_file_urls(tmp_path: Path) -> None:
    with open_event_log(f"file://{tmp_path}/a%20b?segment_bytes=8192&dedup_window=5") as log:
        assert isinstance(log, FileEventLog)
        assert log.path == tmp_path / "a b" and log.segment_bytes == 8192
        assert log.append([click(1)]).dtype == np.int64
    for bad in (
        "file://rel/dir",
        "file:relative",
        f"file://{tmp_path}?bogus=1",
        f"file://{tmp_path}?segment_bytes=x",
    ):
        with pytest.raises(ConfigError):
            open_event_log(bad)
