"""Text and typed scans built in C (`db_api.c_pages`) give exactly what the general path gives,
for every kind of stored value; pages holding other types take the general path."""

from __future__ import annotations

import datetime as dt
import math
import random
import struct
from pathlib import Path

import bson
import pyarrow as pa
import pytest
from bson import Binary, Code, Decimal128, Int64, ObjectId, Regex

from db_api import c_pages
from db_api.scan_pages import MAX_CELLS_PER_BATCH, PageFormat, encode_page
from db_api.server import start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire import arrow_codec, bson_codec
from tests.conftest import TOKEN

TEXT = pa.schema([("_id", pa.string()), ("a", pa.string()), ("b", pa.string())])

# Every BSON value a stored document may hold where a text column is asked for.
VALUES = [
    "text", "", "é\x00x", "🙂 " * 40, "\x7f" * 3, "x" * 0x7FF5, None, 1, Int64(2**40), 1.5, -0.0,
    float("nan"), float("inf"), True, {"b": "x"}, {}, ["x"], [], dt.datetime(2020, 1, 1),
    b"x", Binary(b"x", 4), ObjectId("5f1d7f9c8e4b2a0012345678"), Decimal128("1.5"), Regex("a"), Code("x"),
]  # fmt: skip


def built(blobs: list[bytes], schema: pa.Schema, as_text: bool = True) -> pa.RecordBatch | None:
    """The page built in C, as a scan worker receives it (its documents joined)."""
    return c_pages.stream_batch(b"".join(blobs), len(blobs), schema, as_text)


def general(blobs: list[bytes], schema: pa.Schema, *, as_text: bool) -> pa.Table:
    """What the general path makes of the page (documents decoded to dicts, then Arrow)."""
    docs = bson_codec.decode_many(blobs)
    return pa.Table.from_batches([arrow_codec.documents_to_batch(docs, as_text=as_text, schema=schema)])


def scanned(blobs: list[bytes], schema: pa.Schema, *, as_text: bool) -> pa.Table:
    fmt = PageFormat(as_text=as_text, schema_ipc=schema.serialize().to_pybytes())
    return pa.concat_tables(arrow_codec.ipc_to_table(ipc) for ipc, _ in encode_page(blobs, fmt))


def assert_scans_as_the_general_path(blobs: list[bytes], *, as_text: bool = True) -> None:
    """The scan gives what the general path gives, or refuses what it refuses."""
    try:
        expected = general(blobs, TEXT, as_text=as_text)
    except Exception as exc:  # the general path refuses it: so must the scan
        with pytest.raises(type(exc)):
            scanned(blobs, TEXT, as_text=as_text)
        return
    assert scanned(blobs, TEXT, as_text=as_text).equals(expected)


def page(value: object, *, missing_b: bool = False) -> list[bytes]:
    docs = [
        {"_id": "t1", "a": "first", "b": "x"},
        {"_id": "t2", "a": value, "b": "y"},
        {"_id": "t3", "a": "z"},
    ]
    if missing_b:
        del docs[1]["b"]
    return [bson.encode(doc) for doc in docs]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:20])
@pytest.mark.parametrize("as_text", [True, False])
def test_every_stored_value_scans_as_the_general_path_scans_it(value: object, as_text: bool) -> None:
    assert_scans_as_the_general_path(page(value, missing_b=True), as_text=as_text)


def test_an_all_text_page_is_built_in_c_and_anything_else_is_left_to_the_general_path() -> None:
    assert built(page("text"), TEXT) is not None
    assert built(page(None, missing_b=True), TEXT) is not None
    for value in (1, 1.5, float("nan"), float("inf"), True, {"b": "x"}, ["x"], b"x", dt.datetime(2020, 1, 1)):
        assert built(page(value), TEXT) is None, value


# Datetimes as BSON keeps them (milliseconds), at the edges of the text the general path writes.
DATETIMES = [
    dt.datetime(2026, 12, 6, 1, 33, 39, 610000), dt.datetime(2026, 12, 6, 1, 33, 39),
    dt.datetime(1970, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999000), dt.datetime(1, 1, 1),
    dt.datetime(2000, 2, 29, 12, 0, 0, 1000), dt.datetime(9999, 12, 31, 23, 59, 59, 999000), None,
]  # fmt: skip


def received(values: list[object], first: object = dt.datetime(2026, 1, 1)) -> list[bytes]:
    """A page whose field `b` is `first` in its first document (as `received_at` is in raw), then
    each of `values`, then missing."""
    docs = [{"_id": "d0", "a": "x", "b": first}]
    docs += [{"_id": f"d{i + 1}", "a": "y", "b": value} for i, value in enumerate(values)]
    docs.append({"_id": "last", "a": "z"})
    return [bson.encode(doc) for doc in docs]


def test_a_page_of_datetimes_is_built_in_c_and_written_as_the_general_path_writes_them() -> None:
    blobs = received(DATETIMES)
    assert built(blobs, TEXT) is not None
    got = scanned(blobs, TEXT, as_text=True)
    assert got.equals(general(blobs, TEXT, as_text=True))
    assert got.column("b").to_pylist()[1:4] == [
        "2026-12-06T01:33:39.610000+00:00", "2026-12-06T01:33:39+00:00", "1970-01-01T00:00:00+00:00"
    ]  # fmt: skip
    rng = random.Random(11)
    some = [bson_codec.MIN_DATETIME_MS, bson_codec.MAX_DATETIME_MS, -1, 0, 999, -1000]
    some += [rng.randrange(bson_codec.MIN_DATETIME_MS, bson_codec.MAX_DATETIME_MS) for _ in range(3_000)]
    blobs = received([bson.DatetimeMS(ms) for ms in some])
    assert built(blobs, TEXT) is not None
    assert scanned(blobs, TEXT, as_text=True).equals(general(blobs, TEXT, as_text=True))


@pytest.mark.parametrize(
    "value", ["text", 1, 1.5, float("nan"), True, {"x": 1}, bson.DatetimeMS(bson_codec.MAX_DATETIME_MS + 1)]
)
def test_a_datetime_field_holding_anything_else_takes_the_general_path(value: object) -> None:
    assert built(received([value]), TEXT) is None
    assert_scans_as_the_general_path(received([value]))
    assert_scans_as_the_general_path(received([], first=value))  # also where the first is not one


def test_every_nan_double_is_found_whatever_its_payload() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        bits = (0x7FF << 52) | rng.randrange(1, 1 << 52) | (rng.randrange(2) << 63)
        value = struct.unpack("<d", struct.pack("<Q", bits))[0]
        assert math.isnan(value)
        assert c_pages._may_hold_nan(bson.encode({"_id": "n", "a": value}), TEXT)
    assert not c_pages._may_hold_nan(b"".join(page("text")), TEXT)
    # A NaN in a field the scan does not ask for is not read: the page is still built in C.
    unasked = [*page("text"), bson.encode({"_id": "t4", "a": "w", "c": float("nan")})]
    assert not c_pages._may_hold_nan(b"".join(unasked), TEXT)
    assert built(unasked, TEXT) is not None


def test_a_page_full_of_high_bytes_is_not_searched_byte_by_byte() -> None:
    blobs = [bson.encode({"_id": f"d{i}", "a": "\x7f" * 5_000}) for i in range(200)]
    # Too many to look at one by one: the page is searched for the asked fields as doubles.
    assert not c_pages._may_hold_nan(b"".join(blobs), TEXT)
    assert scanned(blobs, TEXT, as_text=True).equals(general(blobs, TEXT, as_text=True))
    blobs.append(bson.encode({"_id": "nan", "b": float("nan")}))
    assert c_pages._may_hold_nan(b"".join(blobs), TEXT)
    assert scanned(blobs, TEXT, as_text=True).equals(general(blobs, TEXT, as_text=True))


def test_schemas_it_does_not_take() -> None:
    assert not c_pages.takes(None)
    assert not c_pages.takes(pa.schema([]))
    assert not c_pages.takes(pa.schema([("a", pa.int64())]))
    assert not c_pages.takes(pa.schema([("a", pa.large_string())]))
    assert not c_pages.takes(pa.schema([("a.b", pa.string())]))  # a path into a document there
    assert not c_pages.takes(pa.schema([("a[]", pa.string())]))
    assert c_pages.takes(TEXT)
    nested = [bson.encode({"_id": "n", "a": {"b": "inner"}, "a.b": "flat"})]
    dotted = pa.schema([("_id", pa.string()), ("a.b", pa.string())])
    assert scanned(nested, dotted, as_text=True).equals(general(nested, dotted, as_text=True))


# What the process step asks of `cleaned`: text, a boolean and doubles.
TYPED = pa.schema([("_id", pa.string()), ("a", pa.float64()), ("b", pa.bool_()), ("c", pa.string())])


def typed_page(column: str, value: object) -> list[bytes]:
    docs = [
        {"_id": "t1", "a": 1.5, "b": True, "c": "x"},
        {"_id": "t2", "a": 2, "b": False, "c": "y", column: value},
        {"_id": "t3"},
    ]
    return [bson.encode(doc) for doc in docs]


def assert_typed_as_the_general_path(blobs: list[bytes]) -> None:
    """A typed scan gives what the general path gives (NaN and -0.0 told apart), or refuses what
    it refuses."""
    try:
        expected = general(blobs, TYPED, as_text=False)
    except Exception as exc:
        with pytest.raises(type(exc)):
            scanned(blobs, TYPED, as_text=False)
        return
    got = scanned(blobs, TYPED, as_text=False)
    assert got.schema == expected.schema and repr(got.to_pylist()) == repr(expected.to_pylist())


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:20])
@pytest.mark.parametrize("column", ["a", "b", "c"])
def test_every_stored_value_in_a_typed_column_scans_as_the_general_path_scans_it(
    value: object, column: str
) -> None:
    assert_typed_as_the_general_path(typed_page(column, value))


def test_a_page_of_cleaned_records_is_built_in_c() -> None:
    rng = random.Random(5)
    values = [None, 0, -3, 2**31 - 1, 0.1, -0.0, 1e300, -2.5e-310, True, False]
    docs = [
        {"_id": f"s{i}", "a": rng.choice(values), "b": rng.choice([True, False, None]), "c": f"x{i}"}
        for i in range(3_000)
    ]
    for doc in docs[::7]:
        del doc["b"]
    blobs = [bson.encode(doc) for doc in docs]
    assert built(blobs, TYPED, as_text=False) is not None
    assert_typed_as_the_general_path(blobs)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("a", Int64(5)), ("a", Int64(2**60)), ("a", float("nan")), ("a", float("inf")), ("a", "1.5"),
        ("b", 1), ("b", float("nan")), ("b", "true"), ("c", dt.datetime(2020, 1, 1)), ("c", 1),
    ],
)  # fmt: skip
def test_a_typed_value_pymongoarrow_would_read_otherwise_takes_the_general_path(
    column: str, value: object
) -> None:
    """A 64-bit integer or a NaN in a double column (pymongoarrow rounds one, nulls the other), a
    NaN in a boolean one, or a value of another type; a datetime in a text column is cast by the
    general path in a typed scan, not written as ISO text."""
    assert built(typed_page(column, value), TYPED, as_text=False) is None
    assert_typed_as_the_general_path(typed_page(column, value))


@pytest.mark.parametrize(("schema", "field"), [(TEXT, "b"), (TYPED, "c")], ids=["text", "typed"])
def test_datetimes_in_a_scan_that_is_not_a_text_scan_are_cast_by_the_general_path(
    schema: pa.Schema, field: str
) -> None:
    """Only a text scan writes datetimes as ISO text; another casts them as Arrow does, so a page
    with one goes the general path even where the first document holds it."""
    blobs = [bson.encode({"_id": f"t{i}", field: dt.datetime(2020, 1, 1, i)}) for i in range(3)]
    assert built(blobs, schema, as_text=False) is None
    expected = general(blobs, schema, as_text=False)
    assert repr(scanned(blobs, schema, as_text=False).to_pylist()) == repr(expected.to_pylist())


def test_a_text_scan_takes_text_columns_only() -> None:
    """A text scan turns every value into text before casting it to the column's type: a double
    column there is the general path's."""
    assert c_pages.takes(TYPED, as_text=False)
    assert not c_pages.takes(TYPED, as_text=True)
    blobs = typed_page("a", True)
    assert_typed_as_the_general_path(blobs)
    fmt = PageFormat(as_text=True, schema_ipc=TYPED.serialize().to_pybytes())
    with pytest.raises(Exception, match="true"):
        encode_page(blobs, fmt)  # 'true' is no double: refused, as the general path refuses it


def test_a_page_too_large_for_one_batch_is_split_by_the_general_path() -> None:
    rows = MAX_CELLS_PER_BATCH // len(TEXT) + 10
    blobs = [bson.encode({"_id": f"d{i}", "a": "v"}) for i in range(rows)]
    fmt = PageFormat(schema_ipc=TEXT.serialize().to_pybytes())
    encoded = encode_page(blobs, fmt)
    assert len(encoded) == 2 and sum(rows for _, rows in encoded) == len(blobs)
    small = PageFormat(schema_ipc=TEXT.serialize().to_pybytes(), max_ipc_bytes=20_000)
    halves = encode_page(blobs[:2_000], small)
    assert len(halves) > 1 and all(len(ipc) <= 20_000 for ipc, _ in halves)


@pytest.mark.slow
def test_raw_records_of_every_kind_scan_through_the_db_api_as_text(tmp_path: Path) -> None:
    """Through a real db-api with its scan workers: text pages and pages holding other values
    give the values as stored text, in order, none lost."""
    server = start_server(SqliteStore(tmp_path / "store.sqlite3"), "127.0.0.1:0", token=TOKEN, scan_workers=2)
    client = DbApiClient(f"127.0.0.1:{server.port}", TOKEN)
    try:
        text_rows = [
            {"_id": f"r{i:06d}", "a": f"value {i % 97}", "b": None if i % 5 else "x"} for i in range(30_000)
        ]
        client.write("raw", pa.Table.from_pylist(text_rows))
        client.insert_one("raw", {"_id": "nan", "a": float("nan")})  # on a page of text
        got = client.scan("raw", schema=TEXT, batch_size=4_000, column_types="text")
        assert got.num_rows == len(text_rows) + 1
        assert got.column("a")[-1].as_py() == "NaN"  # not null: its page took the general path
        odd = {f"s{i:02d}": value for i, value in enumerate(VALUES) if not isinstance(value, (Regex, Code))}
        for doc_id, value in odd.items():
            client.insert_one("raw", {"_id": doc_id, "a": value})
        got = client.scan("raw", schema=TEXT, batch_size=4_000, column_types="text")
        assert got.num_rows == len(text_rows) + 1 + len(odd)
        by_id = dict(zip(got.column("_id").to_pylist(), got.column("a").to_pylist(), strict=True))
        assert all(by_id[row["_id"]] == row["a"] for row in text_rows)
        assert by_id["s00"] == "text" and by_id["s06"] is None and by_id["s07"] == "1"
        assert by_id["s11"] == "NaN" and by_id["s12"] == "Infinity"
    finally:
        client.close()
        server.stop(grace=1)
