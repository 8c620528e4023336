r"""Importers: MovieLens, MovieTweetings and generic CSV/Parquet into canonical Arrow tables.

:func:`import_dataset` streams a dataset chunk by chunk — a 20M-row file is never held as Python
objects — validates every chunk (:mod:`funnel.data.validation`) and hands canonical-schema tables
to a ``sink(kind, table)``, where kind is ``"interactions"``, ``"items"`` or ``"users"``. Every
rejected row is reported with its file and exact 1-based line (a header is line 1).

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "events.csv"
    >>> _ = p.write_text("user_id,item_id,timestamp,type\nu1,i1,1700000000,click\nu2,,1700000000,view\n")
    >>> got = []
    >>> report = import_dataset(p, "csv", sink=lambda kind, t: got.append((kind, t.num_rows)),
    ...                         on_error="skip", progress=False)
    >>> got, report.rows_read, report.rows_ok
    ([('interactions', 1)], {'interactions': 2}, {'interactions': 1})
    >>> print(report.bad_rows[0])
    events.csv: item_id (row 3): is required
    >>> import_dataset(p, "csv", sink=lambda kind, t: None, progress=False)
    Traceback (most recent call last):
    ...
    funnel.core.errors.ValidationError: 1 bad row in events.csv:
      events.csv: item_id (row 3): is required
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pyarrow as pa

from funnel.core.errors import ConfigError
from funnel.core.schema import INTERACTIONS
from funnel.data.importers.base import KINDS, Dataset, ReadContext
from funnel.data.importers.movielens import open_movielens
from funnel.data.importers.movietweetings import open_movietweetings
from funnel.data.importers.report import ImportReport, bad_rows_error
from funnel.data.importers.tabular import ColumnMapping, open_tabular
from funnel.data.validation import BadRow

__all__ = [
    "FORMATS",
    "KINDS",
    "BadRow",
    "ColumnMapping",
    "ImportReport",
    "import_dataset",
    "load_interactions",
]

FORMATS = ("movielens", "movietweetings", "csv", "parquet")
"""Names accepted as ``fmt``."""

Sink = Callable[[str, pa.Table], None]


def _plan(
    path: str | Path,
    fmt: str,
    mapping: ColumnMapping | None,
    items_path: str | Path | None,
    kinds: Collection[str],
) -> Dataset:
    if fmt in ("movielens", "movietweetings") and (mapping is not None or items_path is not None):
        raise ConfigError(f"mapping and items_path apply to csv and parquet, not {fmt}")
    if fmt == "movielens":
        return open_movielens(path, kinds)
    if fmt == "movietweetings":
        return open_movietweetings(path, kinds)
    if fmt in ("csv", "parquet"):
        return open_tabular(path, fmt, mapping, items_path, kinds)
    raise ConfigError(f"unknown import format {fmt!r}; known: {', '.join(FORMATS)}")


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("import", total=total)
        yield lambda n: bar.advance(task, n)


def import_dataset(
    path: str | Path,
    fmt: str,
    *,
    sink: Sink,
    mapping: ColumnMapping | None = None,
    on_error: Literal["fail", "skip"] = "fail",
    items_path: str | Path | None = None,
    chunk_bytes: int = 64 << 20,
    progress: bool = True,
    kinds: Collection[str] = KINDS,
) -> ImportReport:
    """Stream a dataset into ``sink(kind, table)``, chunk by chunk, validated; return the counts.

    Args:
        path: a MovieLens/MovieTweetings folder (or a file in it), or a CSV/Parquet file.
        fmt: one of :data:`FORMATS`.
        sink: receives canonical tables (``INTERACTIONS``, ``ITEMS`` or ``USERS`` schema).
        mapping: source columns for ``csv``/``parquet`` (default: canonical names).
        on_error: ``"fail"`` raises at the end of the first chunk with bad rows, sending nothing of
            that chunk; ``"skip"`` imports the good rows and reports every bad one.
        items_path: a catalogue file for ``csv``/``parquet``.
        chunk_bytes: bytes read per chunk (memory scales with it).
        progress: show a progress bar (by bytes read) on stderr.
        kinds: which kinds to read (files feeding no wanted kind are not read at all).

    Raises:
        ValidationError: bad rows under ``on_error="fail"``, a missing column, an unreadable file.
        ConfigError: unknown ``fmt``, ``on_error`` or time unit.
        NotFoundError: the files are not there.
    """
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ConfigError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    plan = _plan(path, fmt, mapping, items_path, kinds)
    report = ImportReport(files=[f.name for f in plan.files])
    with _progress(sum(f.stat().st_size for f in plan.files), progress) as on_bytes:
        for part in plan.parts(ReadContext(chunk_bytes, on_bytes, kinds)):
            if part.bad and on_error == "fail":
                raise bad_rows_error(part.bad)
            report.count(part.kind, read=part.rows_read, ok=part.table.num_rows, bad=part.bad)
            if part.emit and part.table.num_rows:
                sink(part.kind, part.table)
    return report


def load_interactions(path: str | Path, fmt: str, **options: object) -> pa.Table:
    r"""All interactions of a dataset as one ``INTERACTIONS`` table (for evaluation on small data).

    Takes the keyword options of :func:`import_dataset` except ``sink`` and ``kinds``.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
        >>> t = load_interactions(d, "movielens", progress=False)
        >>> t.num_rows, t.column("timestamp")[0].as_py().year
        (2, 1997)
    """
    tables: list[pa.Table] = []
    import_dataset(path, fmt, sink=lambda kind, t: tables.append(t), kinds=("interactions",), **options)  # type: ignore[arg-type]
    return pa.concat_tables(tables) if tables else INTERACTIONS.empty_table()
