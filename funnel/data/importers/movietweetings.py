r"""MovieTweetings: ``ratings.dat``, ``movies.dat`` and ``users.dat``, ``::``-separated UTF-8.

Same layout as MovieLens 1M, with three differences this importer keeps: item ids are IMDb ids
with leading zeros (``"0002844"`` stays a string, exactly), ratings run 0..10, and ``users.dat``
holds ``user_id::twitter_id`` (kept as ``{"twitter_id": "..."}`` attributes). Movies may have no
genres (an empty list).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "ratings.dat").write_text("1::0002844::7::1365029107\n")
    >>> _ = (d / "movies.dat").write_text("0002844::Fantômas (1913)::\n")
    >>> parts = list(open_movietweetings(d).parts(ReadContext()))
    >>> row = parts[0].table.select(["item_id", "categories", "published_at"]).to_pylist()[0]
    >>> row["item_id"], row["categories"], row["published_at"].year
    ('0002844', [], 1913)
    >>> parts[1].table.select(["item_id", "value"]).to_pylist()
    [{'item_id': '0002844', 'value': 7.0}]
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

from funnel.core.errors import NotFoundError
from funnel.data.importers.base import KINDS, Dataset, Part, ReadContext
from funnel.data.importers.delimited import TextFormat
from funnel.data.importers.movielens import RATING_COLS, movie_parts, rating_parts, user_parts

MOVIE_COLS = ("item_id", "title", "genres")
USER_COLS = ("user_id", "twitter_id")
PLAN = {"movies.dat": "items", "users.dat": "users", "ratings.dat": "interactions"}
"""File -> the kind of table it feeds, in reading order."""


def _fmt(names: tuple[str, ...]) -> TextFormat:
    return TextFormat("::", header=False, quoting=False, encoding="utf-8", names=names)


def open_movietweetings(path: str | Path, kinds: Collection[str] = KINDS) -> Dataset:
    """Plan the import of a MovieTweetings folder (or a file in it).

    Raises:
        NotFoundError: the folder has no ``ratings.dat``.
    """
    d = Path(path)
    d = d.parent if d.is_file() else d
    if not (d / "ratings.dat").exists():
        raise NotFoundError(f"no MovieTweetings ratings.dat in {d}")
    use = {name for name, kind in PLAN.items() if kind in kinds and (d / name).exists()}

    def parts(ctx: ReadContext) -> Iterator[Part]:
        if "movies.dat" in use:
            yield from movie_parts(ctx, d / "movies.dat", _fmt(MOVIE_COLS), MOVIE_COLS, [])
        if "users.dat" in use:
            yield from user_parts(ctx, d / "users.dat", _fmt(USER_COLS))
        if "ratings.dat" in use:
            yield from rating_parts(ctx, d / "ratings.dat", _fmt(RATING_COLS), RATING_COLS)

    return Dataset([d / name for name in PLAN if name in use], parts)
