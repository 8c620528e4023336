"""The on-disk format of one ``file://`` event-log segment: header, framed records, scanning.

A segment ``<base offset, 20 digits>.log`` holds the events with offsets ``base, base+1, ...``::

    header   16 bytes   b"FNLSEG" | u16 format version | u64 base offset          (little-endian)
    record   16 bytes   u32 payload length | u32 CRC32 | i64 event-id hash  + payload bytes

The CRC32 (``zlib.crc32``) covers the event-id hash and the payload. The payload is the event as
compact UTF-8 JSON (:func:`~funnel.events.protocol.event_json`, with its ``"kind"``). The hash
(:func:`~funnel.events.dedup.id_hash`; 0 when the event has no ``event_id``) sits outside the JSON
so that reopening rebuilds the dedup index without parsing a single payload. Offsets are implicit:
the n-th record of a segment has offset ``base + n``.

Example:
    >>> import io
    >>> blob, starts = encode_batch(['{"kind":"x"}', '{"kind":"y"}'], [0, 7])
    >>> len(blob), starts
    (56, [0, 28])
    >>> [(pos, h, decode_payload(p)) for pos, h, p in iter_frames(io.BytesIO(blob), 0)]
    [(0, 0, {'kind': 'x'}), (28, 7, {'kind': 'y'})]
    >>> list(iter_frames(io.BytesIO(blob[:50]), 0))
    Traceback (most recent call last):
    ...
    funnel.events.segment.FrameError: short record (22 of 28 bytes) at byte 28
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator, MutableSequence, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from funnel.core.errors import CorruptDataError
from funnel.events.protocol import LogRecord, events_from_dicts

SEGMENT_VERSION = 1
"""Version of the segment and record layout, stored in every segment header."""
SEGMENT_MAGIC = b"FNLSEG"
SEGMENT_HEADER = struct.Struct("<6sHQ")
RECORD_HEADER = struct.Struct("<IIq")
MAX_PAYLOAD = 16 * 1024 * 1024
"""Largest accepted payload: an event bigger than this is rejected (and a longer length is corrupt)."""
INDEX_INTERVAL = 64 * 1024
"""Bytes between two entries of a segment's sparse offset index."""
READ_CHUNK = 1024 * 1024

_HASH = struct.Struct("<q")


def segment_name(base_offset: int) -> str:
    """File name of the segment whose first record has offset ``base_offset``."""
    return f"{base_offset:020d}.log"


def segment_header(base_offset: int) -> bytes:
    """The 16-byte header that starts every segment."""
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, base_offset)


def encode_batch(texts: Sequence[str], hashes: Sequence[int]) -> tuple[bytes, list[int]]:
    """Frame many JSON texts (:func:`~funnel.events.protocol.event_json`) into one buffer.

    Also returns each record's start in the buffer.
    """
    parts: list[bytes] = []
    starts: list[int] = []
    pos = 0
    pack, crc32, pack_hash = RECORD_HEADER.pack, zlib.crc32, _HASH.pack
    for text, h in zip(texts, hashes, strict=True):
        payload = text.encode("utf-8")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"an event of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
        starts.append(pos)
        parts.append(pack(len(payload), crc32(payload, crc32(pack_hash(h))), h))
        parts.append(payload)
        pos += RECORD_HEADER.size + len(payload)
    return b"".join(parts), starts


class FrameError(Exception):
    """A record that cannot be read at byte ``pos``: short (torn) or failing its checks."""

    def __init__(self, pos: int, reason: str) -> None:
        super().__init__(f"{reason} at byte {pos}")
        self.pos = pos
        self.reason = reason


def iter_frames(
    fh: BinaryIO, start: int, end: int | None = None, first_chunk: int = READ_CHUNK
) -> Iterator[tuple[int, int, memoryview]]:
    """Yield ``(position, id hash, payload)`` for records from byte ``start`` to ``end`` (or EOF).

    Reads ``first_chunk`` bytes, then sequential chunks of ``READ_CHUNK``. Raises
    :class:`FrameError` at the first record that is short or fails its length or CRC check; the
    caller decides whether that is a torn tail.
    """
    fh.seek(start)
    buf, i, base = b"", 0, start  # ``buf[i]`` is the byte at file position ``base + i``
    view, n = memoryview(buf), 0  # n == len(buf)
    eof, chunk = False, first_chunk
    hsize, unpack, crc32 = RECORD_HEADER.size, RECORD_HEADER.unpack_from, zlib.crc32
    while True:
        if n - i < hsize and not eof:
            buf, base, i, eof = _refill(fh, buf, base, i, hsize, end, chunk)
            view, n, chunk = memoryview(buf), len(buf), READ_CHUNK
        if n == i:
            return
        if n - i < hsize:
            raise FrameError(base + i, "short record header")
        length, crc, h = unpack(buf, i)
        if not 0 < length <= MAX_PAYLOAD:
            raise FrameError(base + i, f"bad record length {length}")
        stop = i + hsize + length
        if n < stop and not eof:
            buf, base, i, eof = _refill(fh, buf, base, i, hsize + length, end, chunk)
            view, n, chunk = memoryview(buf), len(buf), READ_CHUNK
            stop = i + hsize + length
        if n < stop:
            raise FrameError(base + i, f"short record ({n - i} of {hsize + length} bytes)")
        if crc32(view[i + 8 : stop]) != crc:
            raise FrameError(base + i, "CRC mismatch")
        yield base + i, h, view[i + hsize : stop]
        i = stop


def _refill(
    fh: BinaryIO, buf: bytes, base: int, i: int, need: int, end: int | None, chunk: int
) -> tuple[bytes, int, int, bool]:
    rest = buf[i:]
    base += i
    want = max(chunk, need - len(rest))
    if end is not None:
        want = min(want, end - base - len(rest))
    chunk = fh.read(want) if want > 0 else b""
    eof = len(chunk) < want or (end is not None and base + len(rest) + len(chunk) >= end)
    return rest + chunk, base, 0, eof


def decode_payload(payload: memoryview | bytes) -> dict[str, Any]:
    """Parse a record payload (JSON) back into a dict."""
    return json.loads(bytes(payload))


@dataclass
class Segment:
    """In-memory state of one segment: its extent and a sparse offset -> byte-position index."""

    base: int
    path: Path
    count: int = 0
    """Number of valid records."""
    size: int = SEGMENT_HEADER.size
    """Bytes up to the end of the last valid record."""
    index_offsets: list[int] = field(default_factory=list)
    index_positions: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.index_offsets:
            self.index_offsets.append(self.base)
            self.index_positions.append(SEGMENT_HEADER.size)

    @property
    def end(self) -> int:
        """Offset after this segment's last record."""
        return self.base + self.count

    def note_record(self, pos: int) -> None:
        """Account for the next record, starting at byte ``pos`` (indexes it when due)."""
        if pos - self.index_positions[-1] >= INDEX_INTERVAL:
            self.index_offsets.append(self.base + self.count)
            self.index_positions.append(pos)
        self.count += 1

    def load(self, fh: BinaryIO, hashes: MutableSequence[int], offsets: MutableSequence[int]) -> None:
        """Scan a freshly opened segment file: count and index its records.

        Collects ``(id hash, offset)`` of the records with an event id. Raises
        :class:`FrameError` at the first bad record, with everything before it accounted for.
        """
        count, size, base = self.count, self.size, self.base
        index_offsets, index_positions = self.index_offsets, self.index_positions
        last_indexed = index_positions[-1]
        try:
            for pos, h, payload in iter_frames(fh, size):
                if h:
                    hashes.append(h)
                    offsets.append(base + count)
                if pos - last_indexed >= INDEX_INTERVAL:
                    index_offsets.append(base + count)
                    index_positions.append(pos)
                    last_indexed = pos
                count += 1
                size = pos + RECORD_HEADER.size + len(payload)
        finally:
            self.count, self.size = count, size

    def snapshot(self) -> Segment:
        """A copy frozen at the current extent (safe to read while appends go on)."""
        return replace(
            self, index_offsets=list(self.index_offsets), index_positions=list(self.index_positions)
        )

    def seek_point(self, offset: int) -> tuple[int, int]:
        """``(offset, byte position)`` of the last indexed record at or before ``offset``."""
        lo, hi = 0, len(self.index_offsets)
        while hi - lo > 1:  # bisect_right on index_offsets, minus one
            mid = (lo + hi) // 2
            if self.index_offsets[mid] <= offset:
                lo = mid
            else:
                hi = mid
        return self.index_offsets[lo], self.index_positions[lo]


def read_header(fh: BinaryIO) -> tuple[bytes, int, int] | None:
    """``(magic, version, base offset)`` of a segment, or None when the header is short."""
    fh.seek(0)
    raw = fh.read(SEGMENT_HEADER.size)
    if len(raw) < SEGMENT_HEADER.size:
        return None
    return SEGMENT_HEADER.unpack(raw)


def read_records(segments: list[Segment], offset: int, max_records: int) -> list[LogRecord]:
    """Records from ``offset`` on, within ``segments`` (those from the one holding ``offset``).

    The payloads of each segment are parsed with one ``json.loads`` of a JSON array: a quarter
    cheaper than one call per record.
    """
    out: list[LogRecord] = []
    for segment in segments:
        if len(out) >= max_records:
            break
        at, pos = segment.seek_point(offset)
        first_offset, payloads = offset, []
        want = max_records - len(out)
        with open(segment.path, "rb") as fh:
            first_chunk = min(READ_CHUNK, (offset - at + want) * 512 + 4096)
            try:
                for _pos, _h, payload in iter_frames(fh, pos, segment.size, first_chunk):
                    if at >= offset:
                        payloads.append(payload)
                        if len(payloads) == want:
                            break
                    at += 1
            except FrameError as exc:
                raise CorruptDataError(f"{segment.path}: {exc}") from exc
        if payloads:
            try:
                dicts = json.loads(b"[" + b",".join(payloads) + b"]")
            except ValueError as exc:  # the CRC matched, so this is not a torn write
                raise CorruptDataError(f"{segment.path}: undecodable payload ({exc})") from exc
            events = events_from_dicts(dicts)
            out.extend(LogRecord(first_offset + k, ev) for k, ev in enumerate(events))
        offset = segment.end
    return out


def find_segment(segments: list[Segment], offset: int) -> int:
    """Index of the segment holding ``offset`` (``len(segments)`` when past the end)."""
    lo, hi = 0, len(segments)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if segments[mid].base <= offset:
            lo = mid
        else:
            hi = mid
    return lo if segments and offset < segments[-1].end else len(segments)


def read_event_ids(segments: list[Segment], offsets: list[int], span: int = 512) -> dict[int, str | None]:
    """Event ids stored at sorted ``offsets``; offsets within ``span`` of each other share one read."""
    out: dict[int, str | None] = {}
    i = 0
    while i < len(offsets):
        j = i
        while j + 1 < len(offsets) and offsets[j + 1] - offsets[i] < span:
            j += 1
        start = offsets[i]
        for r in read_records(segments[find_segment(segments, start) :], start, offsets[j] - start + 1):
            out[r.offset] = getattr(r.event, "event_id", None)
        i = j + 1
    return out
