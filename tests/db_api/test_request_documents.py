"""The batches WriteBatches and CommitClean bring, as the db-api reads them: encoded from Arrow when it can
(`from_ipc`), refused with the dict path's words when it cannot."""

from __future__ import annotations

import pyarrow as pa
import pytest

from db_api.request_documents import dicts_from_ipc, from_ipc
from db_api.store.base import CleanCommit
from db_api.store.encoded import EncodedDocuments
from pipeline_lib.wire import bson_codec
from pipeline_lib.wire.arrow_codec import table_to_ipc
from pipeline_lib.wire.bson_codec import MAX_DOCUMENT_BYTES
from pipeline_lib.wire.errors import InvalidArgument


def _both(table: pa.Table) -> tuple[object, list[dict]]:
    data = table_to_ipc(table)
    return from_ipc(data, "submission_id", "cleaned batch"), dicts_from_ipc(
        data, "submission_id", "cleaned batch"
    )


def test_encoded_records_read_as_the_dicts_of_the_dict_path() -> None:
    table = pa.table({"submission_id": ["a", "b"], "v": [1, None], "duplicates": [["x"], None]})
    encoded, dicts = _both(table)
    assert isinstance(encoded, EncodedDocuments)
    assert encoded.ids == ["a", "b"] and list(encoded) == dicts
    assert encoded.values("duplicates") == [["x"], None] and encoded.values("v") == [1, None]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (pa.array(["a", None]), "a record has no value for its key field 'submission_id'"),
        (pa.array([1, 2]), "submission_id must be a string, got int"),
        (pa.array(["a", ""]), "submission_id must be 1 to"),
        (pa.array(["a", "b\x00"]), "submission_id must be 1 to"),
    ],
)
def test_records_without_a_usable_id_are_refused_as_before(ids: pa.Array, message: str) -> None:
    table = pa.table({"submission_id": ids, "v": ["1", "2"]})
    for read in (from_ipc, dicts_from_ipc):
        with pytest.raises(InvalidArgument, match=message):
            read(table_to_ipc(table), "submission_id", "cleaned batch")


def test_a_missing_key_column_is_refused_as_before() -> None:
    with pytest.raises(InvalidArgument, match="no value for its key field 'submission_id'"):
        from_ipc(table_to_ipc(pa.table({"v": ["1"]})), "submission_id", "cleaned batch")


def test_a_document_over_the_bson_limit_is_refused_naming_it_as_before() -> None:
    table = pa.table({"submission_id": ["small", "huge"], "text": ["x", "y" * MAX_DOCUMENT_BYTES]})
    messages = []
    for read in (from_ipc, dicts_from_ipc):
        with pytest.raises(InvalidArgument, match=r"document 'huge' is \d+ bytes; the limit") as refused:
            docs = read(table_to_ipc(table), "submission_id", "cleaned batch")
            [bson_codec.encode(doc) for doc in docs]  # the dict path refuses as the store encodes
        messages.append(str(refused.value))
    assert messages[0] == messages[1]


def test_a_timestamp_past_year_9999_is_refused_naming_its_column() -> None:
    late = pa.array([253_402_300_800_000], pa.timestamp("ms"))
    table = pa.table({"submission_id": ["a"], "at": late})
    with pytest.raises(InvalidArgument, match="column 'at' holds timestamps outside the years 1 to 9999"):
        from_ipc(table_to_ipc(table), "submission_id", "cleaned batch")


def test_types_the_encoder_does_not_cover_take_the_dict_path() -> None:
    table = pa.table({"submission_id": ["a"], "blob": pa.array([b"\x01"], pa.binary())})
    encoded, dicts = _both(table)
    assert not isinstance(encoded, EncodedDocuments) and encoded == dicts


LAST_MS = 253402300799999  # the last millisecond of year 9999
TZ_14 = pa.timestamp("ms", "+14:00")


def _masked_lists() -> pa.Array:
    """Lists whose null slot still spans items (Arrow allows it; `flatten` skips them)."""
    offsets = pa.array([0, 2, 4, 5], pa.int32())
    return pa.ListArray.from_arrays(offsets, pa.array([1, 2, 3, 4, 5]), mask=pa.array([False, True, False]))


def _same_names() -> pa.Array:
    return pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (pa.table({"_id": ["a", "b", "c"], "l": _masked_lists()}), "_id"),
        (pa.table({"_id": ["a"], "l": pa.array([[-1]], pa.list_(pa.timestamp("us")))}), "_id"),
        (pa.table({"_id": ["a"], "l": pa.array([[LAST_MS - 3600_000]], pa.list_(TZ_14))}), "_id"),
        (pa.table({"_id": ["a"], "s": _same_names()}), "_id"),
        (pa.table({"_id": ["a"], "duplicates": pa.array([0], pa.timestamp("ms"))}), "_id"),
        (pa.table({"_id": ["a"], "duplicates": pa.array([LAST_MS], pa.timestamp("ms", "+05:30"))}), "_id"),
        (pa.table({"_id": ["a"], "duplicates": _same_names()}), "_id"),
        (pa.table({"_id": pa.array([-(10**17)], pa.timestamp("ms")), "k": ["a"]}), "k"),
    ],
    ids=["null_list_with_items", "nested_sub_ms", "nested_tz_past_9999", "struct_name_twice",
         "duplicates_timestamp", "duplicates_tz_edge", "duplicates_struct", "id_column_beside_key"],
)  # fmt: skip
def test_shapes_found_by_review_store_or_refuse_exactly_as_the_dict_path(table: pa.Table, key: str) -> None:
    """Each once stored other bytes, or raised what became an INTERNAL error, or was accepted
    where the dict path refused it."""
    outcomes = []
    for read in (from_ipc, dicts_from_ipc):
        try:
            docs = read(table_to_ipc(table), key, "cleaned batch")
            CleanCommit(docs, [], [])
            outcomes.append([bson_codec.encode(doc) for doc in docs])
        except InvalidArgument as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


def test_the_first_document_over_the_limit_is_named() -> None:
    big = "y" * MAX_DOCUMENT_BYTES
    table = pa.table({"submission_id": ["a", "b"], "text": [big, big + "longer"]})
    with pytest.raises(InvalidArgument, match="document 'a' is"):
        from_ipc(table_to_ipc(table), "submission_id", "cleaned batch")
