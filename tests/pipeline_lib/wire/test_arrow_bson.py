"""`arrow_bson.encode` makes, byte for byte, what the dict path (`table_to_documents`,
`with_key_as_id`, `bson_codec.encode`) makes of the same records, for every type it covers."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pytest

from pipeline_lib.wire import arrow_bson, arrow_codec, bson_codec

I32, I64 = 2**31, 2**63


def _dict_path(table: pa.Table, key: str) -> list[bytes]:
    docs = bson_codec.with_key_as_id(arrow_codec.table_to_documents(table), key)
    return [bson_codec.encode(doc) for doc in docs]


def _encoded(table: pa.Table, key: str) -> list[bytes]:
    blobs = arrow_bson.encode(table, table.column(key).combine_chunks())
    assert blobs is not None, "a type the encoder covers was refused"
    return blobs.to_pylist()


def _ids(n: int) -> pa.Array:
    return pa.array([f"id-{i}" for i in range(n)])


STRUCT = pa.struct([("code", pa.string()), ("n", pa.int64()), ("tags", pa.list_(pa.string()))])
COLUMNS = {
    "text": pa.array(["plain", "", None, "é \u2013 漢字 🎓", "nul\x00inside", "x" * 300], pa.string()),
    "large_text": pa.array(["a", None, "", "bé", "c", "d"], pa.large_string()),
    "flag": pa.array([True, False, None, True, False, None]),
    "float64": pa.array([0.0, -0.0, float("nan"), float("inf"), None, 1e308]),
    "float32": pa.array([1.5, None, -2.25, 3.4e38, float("-inf"), 0.1], pa.float32()),
    "int8": pa.array([-128, 127, None, 0, 1, -1], pa.int8()),
    "int16": pa.array([-(2**15), 2**15 - 1, None, 0, 7, -7], pa.int16()),
    "int32": pa.array([-I32, I32 - 1, None, 0, 5, -5], pa.int32()),
    "int64": pa.array([-I32, I32 - 1, I32, -I32 - 1, -I64, I64 - 1], pa.int64()),
    "int64_nulls": pa.array([None, I32, None, 3, None, -I32 - 1], pa.int64()),
    "uint8": pa.array([0, 255, None, 1, 2, 3], pa.uint8()),
    "uint16": pa.array([0, 2**16 - 1, None, 1, 2, 3], pa.uint16()),
    "uint32": pa.array([0, 2**32 - 1, I32 - 1, I32, None, 3], pa.uint32()),
    "nothing": pa.nulls(6),
    "ts_utc_ms": pa.array(
        [0, -1, 1_700_000_000_123, None, -62_135_596_800_000, 253_402_300_799_999],
        pa.timestamp("ms", tz="UTC"),
    ),
    "ts_naive_us": pa.array([0, -1_500, 1_700_000_000_123_456, None, 999, -999], pa.timestamp("us")),
    "ts_ns": pa.array([1, -1, 1_700_000_000_123_456_789, None, 0, 10**18], pa.timestamp("ns", tz="+02:00")),
    "ts_s": pa.array([0, -86_400, 1_700_000_000, None, 1, 2], pa.timestamp("s")),
    "tags": pa.array([["a", "b"], [], None, [None, "c"], ["x"] * 12, ["é"]], pa.list_(pa.string())),
    "large_tags": pa.array([["a"], None, [], ["b", None], [], ["c"]], pa.large_list(pa.string())),
    "nested_lists": pa.array(
        [[[1, 2], []], None, [None, [3]], [], [[4]], [[I32]]], pa.list_(pa.list_(pa.int64()))
    ),
    "record": pa.array(
        [
            {"code": "a", "n": 1, "tags": ["t"]},
            None,
            {"code": None, "n": None, "tags": None},
            {"code": "b", "n": I32, "tags": []},
            {"code": "c", "n": -1, "tags": [None]},
            {"code": "", "n": 0, "tags": ["u", "v"]},
        ],
        STRUCT,
    ),
    "records": pa.array(
        [
            [{"code": "a", "n": 1, "tags": ["t"]}, {"code": "b", "n": None, "tags": []}],
            [],
            None,
            [None, {"code": "c", "n": 2, "tags": None}],
            [{"code": f"r{i}", "n": i, "tags": [str(i)]} for i in range(11)],
            [{"code": "d", "n": -I32 - 1, "tags": ["x", "y"]}],
        ],
        pa.list_(STRUCT),
    ),
    "empty_struct_fields": pa.array(
        [
            {"inner": {"v": 1.5}},
            {"inner": None},
            None,
            {"inner": {"v": None}},
            {"inner": {"v": 2.0}},
            {"inner": {"v": -0.5}},
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_each_type_encodes_as_the_dict_path_does(name: str) -> None:
    table = pa.table({"submission_id": _ids(6), name: COLUMNS[name]})
    assert _encoded(table, "submission_id") == _dict_path(table, "submission_id")


def test_a_table_of_every_type_sliced_and_in_several_chunks_encodes_as_the_dict_path_does() -> None:
    table = pa.table({"submission_id": _ids(6), **COLUMNS})
    chunked = pa.concat_tables([table.slice(0, 2), table.slice(2, 3), table.slice(5)])
    assert chunked.column("records").num_chunks == 3
    assert _encoded(chunked, "submission_id") == _dict_path(table, "submission_id")
    sliced = table.slice(2, 3)  # arrays with an offset: lists, structs and validity bitmaps
    assert _encoded(sliced, "submission_id") == _dict_path(sliced, "submission_id")


def test_the_id_comes_first_and_an_id_column_gives_way_to_the_key() -> None:
    table = pa.table({"v": [1, 2], "_id": ["old-1", "old-2"], "submission_id": ["s1", "s2"]})
    encoded = _encoded(table, "submission_id")
    assert encoded == _dict_path(table, "submission_id")
    assert [bson_codec.decode(b) for b in encoded] == [
        {"_id": "s1", "v": 1, "submission_id": "s1"},
        {"_id": "s2", "v": 2, "submission_id": "s2"},
    ]
    by_id = pa.table({"v": [1.5], "_id": ["a"]})
    assert _encoded(by_id, "_id") == _dict_path(by_id, "_id")


def test_an_empty_table_encodes_to_no_documents() -> None:
    table = pa.table(
        {"submission_id": pa.array([], pa.string()), "tags": pa.array([], pa.list_(pa.string()))}
    )
    assert _encoded(table, "submission_id") == []


@pytest.mark.parametrize(
    "column",
    [
        pa.array([b"\x00\x01", None], pa.binary()),
        pa.array([dt.date(2024, 1, 2), None], pa.date32()),
        pa.array([decimal.Decimal("1.5"), None], pa.decimal128(5, 2)),
        pa.array([2**64 - 1, 0], pa.uint64()),
        pa.array([[1, 2], None], pa.list_(pa.int64(), 2)),
        pa.array([[b"x"], []], pa.list_(pa.binary())),
    ],
    ids=["binary", "date", "decimal", "uint64", "fixed_size_list", "list_of_binary"],
)
def test_other_types_are_left_to_the_dict_path(column: pa.Array) -> None:
    table = pa.table({"submission_id": _ids(2), "v": column})
    assert arrow_bson.encode(table, table.column("submission_id").combine_chunks()) is None


def test_a_timestamp_readers_cannot_decode_is_refused() -> None:
    late = pa.array([253_402_300_800_000], pa.timestamp("ms"))  # 10000-01-01
    table = pa.table({"submission_id": _ids(1), "at": late})
    with pytest.raises(arrow_bson.OutOfRange):
        arrow_bson.encode(table, table.column("submission_id").combine_chunks())
