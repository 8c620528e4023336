r"""MovieLens: 100K (``u.data``), 1M/10M (``ratings.dat``) and the CSV releases (``ratings.csv``).

The variant is recognised from the files in the folder. Ratings become ``rating`` interactions
(value = stars, seconds -> ms); movies become items (genres -> ``categories``, ``"(1995)"`` ->
``published_at`` when after 1970, ``{"year": 1995}`` in ``attributes``); tag files are folded
into each item's distinct ``tags``; user files become users with their demographics as JSON.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "ratings.dat").write_text("1::1193::5::978300760\n")
    >>> _ = (d / "movies.dat").write_bytes("1193::Misérables (1935)::Drama\n".encode("latin-1"))
    >>> ds = open_movielens(d)
    >>> [p.name for p in ds.files]
    ['movies.dat', 'ratings.dat']
    >>> [(p.kind, p.table.num_rows) for p in ds.parts(ReadContext())]
    [('items', 1), ('interactions', 1)]
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from funnel.core.errors import NotFoundError
from funnel.data.importers.base import (
    KINDS,
    STRING_LIST,
    Dataset,
    Part,
    ReadContext,
    constant,
    date_ms,
    json_objects,
    lookup,
    read_text_parts,
    split_list,
    title_year,
    year_ms,
)
from funnel.data.importers.delimited import TextFormat, iter_chunks, sniff_encoding
from funnel.data.validation import BadRow, RowErrors, mask

S = pa.string()
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
"""Genre flag columns of ``u.item``, used when ``u.genre`` is absent."""
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
"""Occupation codes 0..20 of the 1M ``users.dat``."""
NO_GENRES = ("(no genres listed)",)


def dat_format(names: tuple[str, ...], path: Path | None = None) -> TextFormat:
    """``::``-separated, no header, no quoting; encoding sniffed from ``path`` (UTF-8 or latin-1)."""
    encoding = sniff_encoding(path) if path is not None else "utf-8"
    return TextFormat("::", header=False, quoting=False, encoding=encoding, names=names)


def rating_parts(
    ctx: ReadContext, path: Path, fmt: TextFormat, cols: tuple[str, str, str, str]
) -> Iterator[Part]:
    """Ratings ``(user, item, rating, seconds)`` columns -> ``rating`` interactions."""
    u, i, r, ts = cols
    types = {u: S, i: S, r: pa.float64(), ts: pa.int64()}

    def build(t: pa.Table) -> pa.Table:
        return pa.table(
            {
                "user_id": t[u],
                "item_id": t[i],
                "timestamp": t[ts],
                "type": constant("rating", t.num_rows),
                "value": t[r],
            }
        )

    rename = {"user_id": u, "item_id": i, "timestamp": ts, "value": r}
    yield from read_text_parts(ctx, "interactions", path, fmt, types, build, rename, time_unit="s")


def tag_parts(
    ctx: ReadContext, path: Path, fmt: TextFormat, item_col: str, tag_col: str, into: list[pa.Table]
) -> Iterator[Part]:
    """Validate ``(item, tag)`` rows of a tag file, appending the good ones to ``into``."""
    for raw in iter_chunks(path, fmt, {item_col: S, tag_col: S}, ctx.chunk_bytes, ctx.on_bytes):
        errs = RowErrors(raw.lines)
        item, tag = raw.table[item_col], pc.utf8_trim_whitespace(raw.table[tag_col])
        for name, col in ((item_col, pc.utf8_trim_whitespace(item)), (tag_col, tag)):
            errs.add(name, mask(pc.equal(pc.binary_length(col), 0)), "is required")
        good, bad = errs.apply(pa.table({"item_id": item, "tag": tag}))
        into.append(good)
        bad = [
            BadRow(b.line, b.field, b.reason, path.name) for b in sorted(raw.bad + bad, key=lambda b: b.line)
        ]
        yield Part("tags", path.name, good, bad, raw.rows, emit=False)


def distinct_tags(tables: list[pa.Table]) -> pa.Table:
    """``(item_id, tags)``: each item's distinct tags, sorted."""
    if not tables:
        return pa.table({"item_id": pa.array([], S), "tags": pa.array([], STRING_LIST)})
    t = pa.concat_tables(tables).sort_by([("item_id", "ascending"), ("tag", "ascending")])
    agg = t.group_by("item_id", use_threads=False).aggregate([("tag", "distinct")])
    return agg.rename_columns(["item_id", "tags"])


def movie_parts(
    ctx: ReadContext, path: Path, fmt: TextFormat, cols: tuple[str, str, str], tags: list[pa.Table]
) -> Iterator[Part]:
    """Movies ``(id, title, genres)`` -> items, with the tags collected in ``tags`` (if any)."""
    i, title, genres = cols
    tag_table = distinct_tags(tags) if tags else None

    def build(t: pa.Table) -> pa.Table:
        year = title_year(t[title])
        columns = {
            "item_id": t[i],
            "title": t[title],
            "categories": split_list(t[genres], "|", drop=NO_GENRES),
            "published_at": year_ms(year),
            "attributes": json_objects({"year": year}, numeric={"year"}),
        }
        if tag_table is not None:
            columns["tags"] = pc.coalesce(
                lookup(t[i], tag_table, "item_id", "tags"), pa.scalar([], STRING_LIST)
            )
        return pa.table(columns)

    types = {i: S, title: S, genres: S}
    yield from read_text_parts(ctx, "items", path, fmt, types, build, {"item_id": i})


def genre_names(folder: Path) -> tuple[str, ...]:
    """Genre names from ``u.genre`` (``name|index`` lines) in index order, else the standard 19."""
    path = folder / "u.genre"
    if not path.exists():
        return GENRES_100K
    opts = pv.ParseOptions(delimiter="|", quote_char=False)
    read = pv.ReadOptions(column_names=["name", "index"], encoding=sniff_encoding(path))
    t = pv.read_csv(path, read_options=read, parse_options=opts).sort_by("index")
    return tuple(t.column("name").to_pylist())


def item_100k_parts(ctx: ReadContext, path: Path, genres: tuple[str, ...]) -> Iterator[Part]:
    """``u.item``: id|title|release date|video release date|IMDb URL|19 genre flags."""
    head = ("item_id", "title", "release_date", "video_release_date", "imdb_url")
    fmt = TextFormat("|", header=False, quoting=False, encoding=sniff_encoding(path), names=head + genres)
    names = pa.array(genres, S)

    def build(t: pa.Table) -> pa.Table:
        flags = np.column_stack([mask(pc.equal(t[g], "1")) for g in genres]).reshape(t.num_rows, -1)
        _, which = np.nonzero(flags)
        offsets = np.concatenate([[0], np.cumsum(flags.sum(axis=1))]).astype(np.int32)
        year = pc.coalesce(title_year(t["title"]), pc.utf8_slice_codeunits(t["release_date"], -4))
        return pa.table(
            {
                "item_id": t["item_id"],
                "title": t["title"],
                "categories": pa.ListArray.from_arrays(pa.array(offsets), names.take(pa.array(which))),
                "published_at": pc.coalesce(date_ms(t["release_date"], "%d-%b-%Y"), year_ms(year)),
                "attributes": json_objects({"year": year, "imdb_url": t["imdb_url"]}, numeric={"year"}),
            }
        )

    types = dict.fromkeys(("item_id", "title", "release_date", "imdb_url", *genres), S)
    yield from read_text_parts(ctx, "items", path, fmt, types, build)


def user_parts(
    ctx: ReadContext, path: Path, fmt: TextFormat, numeric: Collection[str] = ()
) -> Iterator[Part]:
    """A user file: first column the id, every other column an attribute (1M occupations named)."""
    user, *attrs = fmt.names

    def build(t: pa.Table) -> pa.Table:
        fields = {a: t[a] for a in attrs}
        if fmt.delimiter == "::" and "occupation" in fields:
            codes = pa.array([str(n) for n in range(len(OCCUPATIONS_1M))])
            named = pa.array(OCCUPATIONS_1M).take(pc.index_in(t["occupation"], value_set=codes))
            fields["occupation"] = pc.coalesce(named, t["occupation"])
        return pa.table({"user_id": t[user], "attributes": json_objects(fields, numeric)})

    yield from read_text_parts(ctx, "users", path, fmt, dict.fromkeys(fmt.names, S), build)


def _folder(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.is_file() else path


RATING_COLS = ("user_id", "item_id", "rating", "timestamp")


def open_movielens(path: str | Path, kinds: Collection[str] = KINDS) -> Dataset:
    """Plan the import of a MovieLens folder (or a file in it); ``kinds`` selects what to read.

    Raises:
        NotFoundError: the folder holds no ``u.data``, ``ratings.dat`` or ``ratings.csv``.
    """
    d = _folder(path)
    csv = TextFormat(",", header=True, quoting=True)
    if (d / "u.data").exists():
        plan = {"u.item": "items", "u.user": "users", "u.data": "interactions"}

        def parts(ctx: ReadContext) -> Iterator[Part]:
            if "u.item" in use:
                yield from item_100k_parts(ctx, d / "u.item", genre_names(d))
            if "u.user" in use:
                names = ("user_id", "age", "gender", "occupation", "zip")
                users = TextFormat("|", header=False, quoting=False, names=names)
                yield from user_parts(ctx, d / "u.user", users, numeric={"age"})
            if "u.data" in use:
                tsv = TextFormat("\t", header=False, quoting=False, names=RATING_COLS)
                yield from rating_parts(ctx, d / "u.data", tsv, RATING_COLS)

    elif (d / "ratings.csv").exists():
        plan = {"tags.csv": "items", "movies.csv": "items", "ratings.csv": "interactions"}

        def parts(ctx: ReadContext) -> Iterator[Part]:
            tags: list[pa.Table] = []
            if "tags.csv" in use:
                yield from tag_parts(ctx, d / "tags.csv", csv, "movieId", "tag", tags)
            if "movies.csv" in use:
                yield from movie_parts(ctx, d / "movies.csv", csv, ("movieId", "title", "genres"), tags)
            if "ratings.csv" in use:
                yield from rating_parts(
                    ctx, d / "ratings.csv", csv, ("userId", "movieId", "rating", "timestamp")
                )

    elif (d / "ratings.dat").exists():
        plan = {
            "tags.dat": "items",
            "movies.dat": "items",
            "users.dat": "users",
            "ratings.dat": "interactions",
        }

        def parts(ctx: ReadContext) -> Iterator[Part]:
            tags: list[pa.Table] = []
            if "tags.dat" in use:
                fmt = dat_format(("user_id", "item_id", "tag", "timestamp"), d / "tags.dat")
                yield from tag_parts(ctx, d / "tags.dat", fmt, "item_id", "tag", tags)
            if "movies.dat" in use:
                fmt = dat_format(("item_id", "title", "genres"), d / "movies.dat")
                yield from movie_parts(ctx, d / "movies.dat", fmt, ("item_id", "title", "genres"), tags)
            if "users.dat" in use:
                fmt = dat_format(("user_id", "gender", "age", "occupation", "zip"), d / "users.dat")
                yield from user_parts(ctx, d / "users.dat", fmt, numeric={"age"})
            if "ratings.dat" in use:
                yield from rating_parts(ctx, d / "ratings.dat", dat_format(RATING_COLS), RATING_COLS)

    else:
        raise NotFoundError(f"no MovieLens ratings (u.data, ratings.dat or ratings.csv) in {d}")
    use = {name for name, kind in plan.items() if kind in kinds and (d / name).exists()}
    return Dataset([d / name for name in plan if name in use], parts)
