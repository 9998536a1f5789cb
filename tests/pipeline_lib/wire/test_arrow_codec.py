"""Arrow <-> document conversion as pure logic."""

from __future__ import annotations

import datetime as dt
import decimal

import bson
import pyarrow as pa

from pipeline_lib.wire import arrow_codec, bson_codec


def test_table_rows_become_documents_with_bson_storable_values() -> None:
    table = pa.table(
        {
            "_id": ["a"],
            "day": pa.array([dt.date(2026, 1, 2)]),
            "amount": pa.array([decimal.Decimal("1.25")], pa.decimal128(5, 2)),
            "tags": pa.array([["x", "y"]]),
            "point": pa.array([{"x": 1, "y": 2.5}]),
        }
    )
    [doc] = arrow_codec.table_to_documents(table)
    back = bson_codec.decode(bson_codec.encode(doc))
    assert back["day"] == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert back["amount"] == bson.Decimal128("1.25")
    assert back["tags"] == ["x", "y"] and back["point"] == {"x": 1, "y": 2.5}


def test_documents_become_a_batch_with_id_first_and_missing_values_null() -> None:
    batch = arrow_codec.documents_to_batch([{"b": 1, "_id": "x"}, {"_id": "y", "c": "z"}])
    assert batch.schema.names == ["_id", "b", "c"]
    assert batch.to_pylist() == [{"_id": "x", "b": 1, "c": None}, {"_id": "y", "b": None, "c": "z"}]


def test_text_mode_keeps_strings_writes_numbers_and_containers_as_json_and_dates_in_iso() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    docs = [{"_id": "x", "n": 1.5, "b": False, "t": when, "s": "  Zoë ", "l": [1, None], "nan": float("nan")}]
    batch = arrow_codec.documents_to_batch(docs, as_text=True)
    assert batch.to_pylist() == [
        {
            "_id": "x",
            "n": "1.5",
            "b": "false",
            "t": "2026-01-02T03:04:05+00:00",
            "s": "  Zoë ",
            "l": "[1,null]",
            "nan": "NaN",
        }
    ]


def test_ipc_round_trip() -> None:
    table = pa.table({"_id": ["a", "b"], "v": [1, 2]})
    assert arrow_codec.ipc_to_table(arrow_codec.table_to_ipc(table)).equals(table)
