"""The outcome of an import: files read, rows read and kept per kind, and every bad row.

Example:
    >>> from funnel.data.validation import BadRow
    >>> r = ImportReport(files=["ratings.dat"])
    >>> r.count("interactions", read=3, ok=2, bad=[BadRow(7, "value", "must be finite", "ratings.dat")])
    >>> print(r.summary())
    files: ratings.dat
    interactions: 3 rows read, 2 imported, 1 bad
    bad rows:
      ratings.dat: value (row 7): must be finite
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from funnel.core.errors import ValidationError
from funnel.data.validation import BadRow

MAX_LISTED = 20
"""Bad rows spelled out in a summary or an error message; the rest are counted."""


def describe_bad_rows(bad: list[BadRow], limit: int = MAX_LISTED) -> str:
    """One bad row per line (indented), capped at ``limit`` with ``"... and N more"``."""
    lines = [f"  {b}" for b in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


def bad_rows_error(bad: list[BadRow]) -> ValidationError:
    """A :class:`ValidationError` listing ``bad`` rows; ``field``/``row`` are the first one's."""
    first = bad[0]
    noun = "row" if len(bad) == 1 else "rows"
    error = ValidationError(f"{len(bad)} bad {noun} in {first.file or 'input'}:\n{describe_bad_rows(bad)}")
    error.field, error.row = first.field, first.line
    return error


@dataclass
class ImportReport:
    """Counts of one import. ``rows_read[kind] == rows_ok[kind] + bad rows of that kind``.

    Kinds are ``interactions``, ``items`` and ``users``, plus ``tags`` for MovieLens tag files
    (folded into items, not sent to the sink). ``bad_rows`` keeps every rejected row, file and line.
    """

    files: list[str] = field(default_factory=list)
    rows_read: dict[str, int] = field(default_factory=dict)
    rows_ok: dict[str, int] = field(default_factory=dict)
    bad_rows: list[BadRow] = field(default_factory=list)

    def count(self, kind: str, *, read: int, ok: int, bad: list[BadRow]) -> None:
        """Add one chunk's counts."""
        self.rows_read[kind] = self.rows_read.get(kind, 0) + read
        self.rows_ok[kind] = self.rows_ok.get(kind, 0) + ok
        self.bad_rows.extend(bad)

    @property
    def n_bad(self) -> int:
        """Number of rejected rows, all kinds together."""
        return len(self.bad_rows)

    def summary(self, limit: int = MAX_LISTED) -> str:
        """A human-readable account: files, per-kind counts, the first ``limit`` bad rows."""
        bad_by_file = Counter(b.file for b in self.bad_rows)
        out = [f"files: {', '.join(self.files)}"]
        for kind, read in self.rows_read.items():
            ok = self.rows_ok.get(kind, 0)
            out.append(f"{kind}: {read:,} rows read, {ok:,} imported, {read - ok:,} bad")
        if self.bad_rows:
            per_file = ", ".join(f"{n:,} in {f}" for f, n in bad_by_file.items())
            out.append("bad rows:" if len(bad_by_file) == 1 else f"bad rows ({per_file}):")
            out.append(describe_bad_rows(self.bad_rows, limit))
        return "\n".join(out)
