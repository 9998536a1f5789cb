"""CommitClean's batches as the db-api reads them: encoded from Arrow when it can
(`from_ipc_encoded`), refused with the dict path's words when it cannot."""

from __future__ import annotations

import pyarrow as pa
import pytest

from db_api.request_documents import from_ipc, from_ipc_encoded
from db_api.store.encoded import EncodedDocuments
from pipeline_lib.wire import bson_codec
from pipeline_lib.wire.arrow_codec import table_to_ipc
from pipeline_lib.wire.bson_codec import MAX_DOCUMENT_BYTES
from pipeline_lib.wire.errors import InvalidArgument


def _both(table: pa.Table) -> tuple[object, list[dict]]:
    data = table_to_ipc(table)
    return from_ipc_encoded(data, "submission_id", "cleaned batch"), from_ipc(
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
    for read in (from_ipc_encoded, from_ipc):
        with pytest.raises(InvalidArgument, match=message):
            read(table_to_ipc(table), "submission_id", "cleaned batch")


def test_a_missing_key_column_is_refused_as_before() -> None:
    with pytest.raises(InvalidArgument, match="no value for its key field 'submission_id'"):
        from_ipc_encoded(table_to_ipc(pa.table({"v": ["1"]})), "submission_id", "cleaned batch")


def test_a_document_over_the_bson_limit_is_refused_naming_it_as_before() -> None:
    table = pa.table({"submission_id": ["small", "huge"], "text": ["x", "y" * MAX_DOCUMENT_BYTES]})
    messages = []
    for read in (from_ipc_encoded, from_ipc):
        with pytest.raises(InvalidArgument, match=r"document 'huge' is \d+ bytes; the limit") as refused:
            docs = read(table_to_ipc(table), "submission_id", "cleaned batch")
            [bson_codec.encode(doc) for doc in docs]  # the dict path refuses as the store encodes
        messages.append(str(refused.value))
    assert messages[0] == messages[1]


def test_a_timestamp_past_year_9999_is_refused_naming_its_column() -> None:
    late = pa.array([253_402_300_800_000], pa.timestamp("ms"))
    table = pa.table({"submission_id": ["a"], "at": late})
    with pytest.raises(InvalidArgument, match="column 'at' holds timestamps outside the years 1 to 9999"):
        from_ipc_encoded(table_to_ipc(table), "submission_id", "cleaned batch")


def test_types_the_encoder_does_not_cover_take_the_dict_path() -> None:
    table = pa.table({"submission_id": ["a"], "blob": pa.array([b"\x01"], pa.binary())})
    encoded, dicts = _both(table)
    assert not isinstance(encoded, EncodedDocuments) and encoded == dicts
