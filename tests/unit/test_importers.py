"""Importers: each format on hand-checkable fixtures, bad rows by exact line, chunking, real data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from funnel.core.errors import ConfigError, NotFoundError, ValidationError
from funnel.core.schema import INTERACTIONS, ITEMS, USERS
from funnel.data.importers import ColumnMapping, ImportReport, import_dataset, load_interactions
from funnel.data.importers.delimited import TextFormat, iter_chunks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MOVIETWEETINGS = SHARED_DATA / "movietweetings-100k"


def run(path: Path, fmt: str, **kw) -> tuple[ImportReport, dict[str, pa.Table]]:
    got: dict[str, list[pa.Table]] = {}
    kw.setdefault("progress", False)
    report = import_dataset(path, fmt, sink=lambda kind, t: got.setdefault(kind, []).append(t), **kw)
    return report, {k: pa.concat_tables(v) for k, v in got.items()}


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def epoch_ms(table: pa.Table, column: str) -> list[int | None]:
    return table.column(column).cast(pa.int64()).to_pylist()


def bad_lines(report: ImportReport) -> list[tuple[int, str]]:
    return [(b.line, b.field) for b in report.bad_rows]


# --- each format, exact values ------------------------------------------------------------


def test_movielens_100k() -> None:
    report, t = run(FIXTURES / "ml-100k", "movielens")
    assert report.files == ["u.item", "u.user", "u.data"]
    assert report.rows_ok == {"items": 4, "users": 2, "interactions": 3} and not report.bad_rows
    assert t["interactions"].schema == INTERACTIONS and t["items"].schema == ITEMS
    inter = t["interactions"]
    assert inter.column("user_id").to_pylist() == ["196", "186", "22"]
    assert inter.column("item_id").to_pylist() == ["242", "302", "377"]
    assert inter.column("value").to_pylist() == [3.0, 3.0, 1.0]
    assert set(inter.column("type").to_pylist()) == {"rating"}
    assert epoch_ms(inter, "timestamp")[0] == 881250949000
    items = {r["item_id"]: r for r in t["items"].to_pylist()}
    assert items["1"]["categories"] == ["Animation", "Children's", "Comedy"]
    assert items["302"]["categories"] == ["Crime", "Film-Noir", "Mystery", "Thriller"]
    assert items["377"]["title"] == "Café au lait (1934)"  # latin-1 in the file
    assert items["242"]["published_at"] == datetime(1997, 1, 24, tzinfo=UTC)  # release date
    assert items["377"]["published_at"] == datetime(1934, 1, 1, tzinfo=UTC)  # year only: January 1
    assert json.loads(items["377"]["attributes"]) == {"year": 1934}
    assert json.loads(items["242"]["attributes"])["imdb_url"].endswith("Kolya%20(1996)")
    users = t["users"].to_pylist()
    assert t["users"].schema == USERS
    assert json.loads(users[0]["attributes"]) == {
        "age": 24,
        "gender": "M",
        "occupation": "technician",
        "zip": "85711",
    }


def test_movielens_1m() -> None:
    report, t = run(FIXTURES / "ml-1m", "movielens")
    assert report.files == ["movies.dat", "users.dat", "ratings.dat"] and not report.bad_rows
    inter = t["interactions"]
    assert inter.column("item_id").to_pylist() == ["1193", "661", "73"]
    assert epoch_ms(inter, "timestamp") == [978300760000, 978302109000, 978298709000]
    items = {r["item_id"]: r for r in t["items"].to_pylist()}
    assert items["73"]["title"] == "Misérables, Les (1995)"
    assert items["661"]["categories"] == ["Animation", "Children's", "Musical"]
    assert epoch_ms(t["items"], "published_at")[0] == ms(1975, 1, 1)
    attrs = [json.loads(a) for a in t["users"].column("attributes").to_pylist()]
    assert attrs[0] == {"gender": "F", "age": 1, "occupation": "K-12 student", "zip": "48067"}
    assert attrs[1]["occupation"] == "self-employed"


def test_movielens_csv_release_with_tags() -> None:
    report, t = run(FIXTURES / "ml-latest-small", "movielens")
    assert report.files == ["tags.csv", "movies.csv", "ratings.csv"]
    assert report.rows_ok == {"tags": 4, "items": 4, "interactions": 3}
    assert "tags" not in t  # folded into items, never sent on its own
    assert t["interactions"].column("value").to_pylist() == [4.0, 4.0, 3.5]
    items = {r["item_id"]: r for r in t["items"].to_pylist()}
    assert items["318"]["title"] == "Shawshank Redemption, The (1994)"
    assert items["318"]["tags"] == ["Morgan Freeman", "prison"]  # distinct, sorted
    assert items["1"]["tags"] == ["pixar"] and items["3"]["tags"] == []
    assert items["200000"]["title"] == 'Death of "Stalin", The (2017)'
    assert items["200000"]["categories"] == []  # "(no genres listed)"
    assert items["1"]["categories"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]


def test_movietweetings_keeps_leading_zeros() -> None:
    report, t = run(FIXTURES / "movietweetings", "movietweetings")
    assert report.rows_ok == {"items": 3, "users": 2, "interactions": 3}
    inter = t["interactions"]
    assert inter.column("item_id").to_pylist() == ["0002844", "1853728", "0104257"]
    assert inter.column("value").to_pylist() == [7.0, 8.0, 0.0]
    assert epoch_ms(inter, "timestamp")[0] == 1365029107000
    items = {r["item_id"]: r for r in t["items"].to_pylist()}
    assert items["0002844"]["title"] == "Fantômas - À l'ombre de la guillotine (1913)"
    assert items["0002844"]["categories"] == ["Crime", "Drama"]
    assert items["1853728"]["categories"] == []  # empty genres field
    assert items["1853728"]["published_at"] == datetime(2012, 1, 1, tzinfo=UTC)
    assert json.loads(t["users"].column("attributes")[0].as_py()) == {"twitter_id": "18405182"}


def test_generic_csv_with_mapping_and_items() -> None:
    mapping = ColumnMapping(
        user_col="user",
        item_col="item",
        time_col="ts",
        type_col="kind",
        value_col="dwell",
        item_id_col="id",
        title_col="name",
        categories_col="genres",
        tags_col="labels",
        creator_col="author",
        published_col="released",
        attribute_cols=["region", "age_rating"],
    )
    report, t = run(
        FIXTURES / "generic" / "events.csv",
        "csv",
        mapping=mapping,
        items_path=FIXTURES / "generic" / "items.csv",
    )
    assert report.files == ["items.csv", "events.csv"] and not report.bad_rows
    inter = t["interactions"]
    assert inter.column("item_id").to_pylist() == ["0007", "0008", "0009"]
    assert inter.column("type").to_pylist() == ["click", "watch", "like"]
    assert inter.column("value").to_pylist() == [None, 31.5, None]
    # ISO 8601: Z, no zone (UTC), and an offset
    assert epoch_ms(inter, "timestamp") == [
        ms(2013, 4, 3, 22, 45, 7),
        ms(2013, 4, 3, 22, 45, 8),
        ms(2013, 4, 3, 20, 45, 9),
    ]
    items = t["items"].to_pylist()
    assert items[0]["title"] == "Skyfall, 007" and items[0]["tags"] == ["classic", "bond"]
    assert items[0]["categories"] == ["Action", "Spy"] and items[0]["creator_id"] == "c1"
    assert items[0]["published_at"] == datetime(2012, 10, 26, tzinfo=UTC)
    assert json.loads(items[1]["attributes"]) == {"region": 'US "East"', "age_rating": "16"}
    assert items[2]["categories"] == [] and items[2]["published_at"] is None
    assert json.loads(items[2]["attributes"]) == {"region": "CZ"}


def test_generic_csv_canonical_columns_need_no_mapping(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text("user_id,item_id,timestamp,value\nu1,i1,1700000000123,2.5\n")
    _, t = run(p, "csv")
    row = t["interactions"].to_pylist()[0]
    assert row["type"] == "rating" and row["value"] == 2.5  # a value column implies ratings
    assert epoch_ms(t["interactions"], "timestamp") == [1700000000123]  # ms detected


def test_parquet(tmp_path: Path) -> None:
    p = tmp_path / "e.parquet"
    ts = pa.array([1_600_000_000, 1_600_000_001, 5], pa.timestamp("s"))
    pq.write_table(
        pa.table({"uid": [1, 2, 3], "iid": ["007", "008", "009"], "t": ts, "type": ["like", "view", "view"]}),
        p,
    )
    report, t = run(p, "parquet", mapping=ColumnMapping(user_col="uid", item_col="iid", time_col="t"))
    inter = t["interactions"]
    assert inter.column("user_id").to_pylist() == ["1", "2", "3"]  # ints become strings
    assert inter.column("item_id").to_pylist() == ["007", "008", "009"]
    assert inter.column("type").to_pylist() == ["like", "view", "view"]
    assert epoch_ms(inter, "timestamp") == [1_600_000_000_000, 1_600_000_001_000, 5000]
    assert report.rows_ok == {"interactions": 3}


def test_parquet_bad_rows_are_numbered_from_one(tmp_path: Path) -> None:
    p = tmp_path / "e.parquet"
    table = pa.table({"user_id": ["a", "", "c"], "item_id": ["x", "y", "z"], "timestamp": [1, 2, -3]})
    pq.write_table(table, p, row_group_size=2)
    report, t = run(p, "parquet", on_error="skip", chunk_bytes=64)
    assert bad_lines(report) == [(2, "user_id"), (3, "timestamp")]
    assert t["interactions"].column("user_id").to_pylist() == ["a"]


# --- bad rows: exact lines, fail / skip -----------------------------------------------------

DAT_BAD = [
    (2, "fields"),  # three fields
    (4, "rating"),  # "abc"
    (5, "rating"),  # nan
    (6, "rating"),  # inf
    (7, "user_id"),  # empty
    (8, "timestamp"),  # "notatime"
    (9, "timestamp"),  # -5 s: out of range
    (11, "fields"),  # five fields
]
CSV_BAD = [
    (3, "type"),
    (4, "value"),
    (5, "item_id"),
    (7, "fields"),
    (9, "timestamp"),
    (10, "value"),
    (11, "user_id"),
]


def test_malformed_dat_skip_reports_each_line() -> None:
    report, t = run(FIXTURES / "bad-dat", "movielens", on_error="skip")
    assert bad_lines(report) == DAT_BAD
    assert report.rows_read == {"interactions": 10} and report.rows_ok == {
        "interactions": 2
    }  # line 3 is blank
    assert t["interactions"].column("user_id").to_pylist() == ["1", "6"]
    reasons = {b.line: b.reason for b in report.bad_rows}
    assert reasons[2] == "expected 4 fields, found 3" and reasons[4] == "not a number: 'abc'"
    assert reasons[5] == reasons[6] == "must be finite" and reasons[7] == "is required"
    assert reasons[8] == "not a timestamp: 'notatime'" and reasons[9].startswith("out of range")
    assert all(b.file == "ratings.dat" for b in report.bad_rows)
    assert "ratings.dat: rating (row 4): not a number: 'abc'" in report.summary()


def test_malformed_csv_skip_reports_each_line() -> None:
    report, t = run(FIXTURES / "generic" / "bad_events.csv", "csv", on_error="skip")
    assert bad_lines(report) == CSV_BAD
    assert t["interactions"].column("item_id").to_pylist() == ["i1", "i,7"]
    assert report.rows_read == {"interactions": 9}
    unknown = next(b for b in report.bad_rows if b.line == 3)
    assert str(unknown).startswith(
        "bad_events.csv: type (row 3): unknown event type 'poke'; known: view, click"
    )


def test_fail_raises_naming_every_line_and_sends_nothing() -> None:
    sent: list[pa.Table] = []
    with pytest.raises(ValidationError) as info:
        import_dataset(FIXTURES / "bad-dat", "movielens", sink=lambda k, t: sent.append(t), progress=False)
    message = str(info.value)
    assert message.startswith("8 bad rows in ratings.dat:")
    for line, field in DAT_BAD:
        assert f"ratings.dat: {field} (row {line}): " in message
    assert (info.value.field, info.value.row) == ("fields", 2)
    assert sent == []


def test_fail_listing_is_capped(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text("user_id,item_id,timestamp\n" + "".join(f",i{n},1700000000\n" for n in range(25)))
    with pytest.raises(ValidationError) as info:
        import_dataset(p, "csv", sink=lambda k, t: None, progress=False)
    message = str(info.value)
    assert "user_id (row 21): is required" in message and "(row 22)" not in message
    assert message.endswith("... and 5 more")


def test_fail_stops_at_the_first_bad_chunk(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    rows = [f"u{n},i{n},1700000000" for n in range(100)]
    rows[60] = "u60,,1700000000"  # line 62
    p.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    sent: list[pa.Table] = []
    with pytest.raises(ValidationError, match=r"item_id \(row 62\)"):
        import_dataset(p, "csv", sink=lambda k, t: sent.append(t), chunk_bytes=200, progress=False)
    users = [u for t in sent for u in t.column("user_id").to_pylist()]
    assert 0 < len(users) < 60 and users == [f"u{n}" for n in range(len(users))]


# --- chunking and line numbers ----------------------------------------------------------------


def _messy_file(tmp_path: Path) -> tuple[Path, list[int], list[int]]:
    """A ::-file with blank lines, CRLF lines and bad rows; returns (path, good lines, bad lines)."""
    rng = np.random.default_rng(7)
    lines, good, bad = [], [], []
    for n in range(1, 151):
        kind = rng.integers(0, 10)
        if kind == 0:
            lines.append("")
        elif kind == 1:
            lines.append(f"{n}::{n}::x::1300000000")
            bad.append(n)
        elif kind == 2:
            lines.append(f"{n}::{n}")
            bad.append(n)
        else:
            lines.append(f"{n}::{n:07d}::{n % 10}::{1300000000 + n}" + ("\r" if kind == 3 else ""))
            good.append(n)
    p = tmp_path / "ratings.dat"
    p.write_text("\n".join(lines))  # no final newline
    return p, good, bad


@pytest.mark.parametrize("chunk_bytes", [1, 17, 256, 64 << 20])
def test_chunk_boundaries_preserve_lines_and_rows(tmp_path: Path, chunk_bytes: int) -> None:
    p, good, bad = _messy_file(tmp_path)
    report, t = run(p, "movietweetings", on_error="skip", chunk_bytes=chunk_bytes)
    assert [b.line for b in report.bad_rows] == bad
    # user id == line number by construction, item ids keep their zeros, ts matches the line
    assert t["interactions"].column("user_id").to_pylist() == [str(n) for n in good]
    assert t["interactions"].column("item_id").to_pylist() == [f"{n:07d}" for n in good]
    assert epoch_ms(t["interactions"], "timestamp") == [(1300000000 + n) * 1000 for n in good]
    assert report.rows_read["interactions"] == len(good) + len(bad)


@pytest.mark.parametrize("chunk_bytes", [3, 64 << 20])
def test_quoted_newlines_keep_physical_line_numbers(tmp_path: Path, chunk_bytes: int) -> None:
    p = tmp_path / "items.csv"
    p.write_text(
        'item_id,title,description\na,Alpha,"first line\nsecond, line"\nb,Beta,"say ""hi"""\n,Gamma,z\n'
    )
    report, t = run(p, "csv", items_path=p, kinds=("items",), on_error="skip", chunk_bytes=chunk_bytes)
    assert t["items"].column("description").to_pylist() == ["first line\nsecond, line", 'say "hi"']
    assert bad_lines(report) == [(5, "item_id")]  # the record on line 2 spans lines 2-3


def test_header_bom_and_crlf_lines(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_bytes(b"\xef\xbb\xbfuser_id,item_id,timestamp\r\n\r\nu1,i1,1700000000\r\nu2,,1700000000\r\n")
    report, t = run(p, "csv", on_error="skip")
    assert t["interactions"].column("user_id").to_pylist() == ["u1"]
    assert bad_lines(report) == [(4, "item_id")]


def test_bom_on_a_headerless_file(tmp_path: Path) -> None:
    p = tmp_path / "ratings.dat"
    p.write_bytes(b"\xef\xbb\xbf1::0002844::7::1365029107\n")
    _, t = run(p, "movietweetings")
    assert t["interactions"].column("user_id").to_pylist() == ["1"]


def test_triple_colon_splits_after_the_field(tmp_path: Path) -> None:
    p = tmp_path / "m.dat"
    p.write_text("1::Title: (1999):::Drama|War\n")
    fmt = TextFormat("::", header=False, quoting=False, names=("id", "title", "genres"))
    [chunk] = iter_chunks(p, fmt, {"title": pa.string(), "genres": pa.string()})
    assert chunk.table.to_pylist() == [{"title": "Title: (1999):", "genres": "Drama|War"}]


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_bytes(b"user_id,item_id,timestamp\nu1,i1,1700000000\nu\xe9,i2,1700000000\n")
    with pytest.raises(ValidationError, match=r"line \(row 3\): is not valid UTF-8"):
        run(p, "csv")


def test_unbalanced_quote_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text('user_id,item_id,timestamp\nu1,i1,1700000000\n"u2,i2,1700000000\n')
    with pytest.raises(ValidationError, match=r"row 3.*unbalanced quote"):
        run(p, "csv")


# --- API details --------------------------------------------------------------------------------


def test_errors_for_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run(FIXTURES / "ml-1m", "netflix")
    with pytest.raises(ConfigError):
        run(FIXTURES / "ml-1m", "movielens", on_error="ignore")
    with pytest.raises(ConfigError, match="mapping and items_path apply to csv and parquet"):
        run(FIXTURES / "ml-1m", "movielens", mapping=ColumnMapping())
    with pytest.raises(NotFoundError):
        run(tmp_path, "movielens")
    with pytest.raises(NotFoundError):
        run(tmp_path / "nope.csv", "csv")
    with pytest.raises(ValidationError, match=r"^uid: not in csv file events\.csv"):
        run(FIXTURES / "generic" / "events.csv", "csv", mapping=ColumnMapping(user_col="uid"))


def test_kinds_limits_the_files_read() -> None:
    report, t = run(FIXTURES / "ml-1m", "movielens", kinds=("interactions",))
    assert report.files == ["ratings.dat"] and list(t) == ["interactions"]


def test_load_interactions_and_progress_bar() -> None:
    t = load_interactions(FIXTURES / "movietweetings", "movietweetings", progress=True)
    assert t.schema == INTERACTIONS and t.num_rows == 3
    empty = load_interactions(FIXTURES / "bad-dat", "movielens", on_error="skip", chunk_bytes=1)
    assert empty.num_rows == 2


@pytest.mark.skipif(not MOVIETWEETINGS.is_dir(), reason=f"real data not found at {MOVIETWEETINGS}")
def test_real_movietweetings_100k() -> None:
    report, t = run(MOVIETWEETINGS, "movietweetings")
    assert report.rows_read["interactions"] == report.rows_ok["interactions"] == 100_000
    assert report.rows_ok["items"] == 10_506 and report.rows_ok["users"] == 16_554
    assert report.n_bad == 0
    item_ids = t["interactions"].column("item_id")
    assert item_ids[2].as_py() == "0104257"
    first = t["items"].to_pylist()[0]
    assert first["item_id"] == "0002844" and first["title"].startswith("Fantômas")
