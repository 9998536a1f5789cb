"""The documents requests carry, decoded and checked: Arrow IPC batches of records, and one
document as extended JSON; and a document as extended JSON for an answer.

The reverse of what `pipeline_lib.wire.requests` builds on the client side. Every refusal is an
`InvalidArgument` that names what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat
from bson import json_util

from db_api.store.encoded import EncodedDocuments
from pipeline_lib.wire import arrow_bson, arrow_codec, bson_codec
from pipeline_lib.wire.errors import InvalidArgument

# Top-level fields the store reads from documents it is given encoded (`CleanCommit`).
KEPT_FIELDS = ("duplicates",)


def from_ipc(data: bytes, key: str | None, what: str) -> list[dict]:
    """The records of an Arrow IPC stream (`what` names it in errors), with column `key` as `_id`."""
    if not data:
        return []
    table = arrow_codec.ipc_to_table(data, what)
    return bson_codec.with_key_as_id(arrow_codec.table_to_documents(table), key)


def from_ipc_encoded(data: bytes, key: str | None, what: str) -> Sequence[dict]:
    """As `from_ipc`, encoded as BSON column by column (`arrow_bson`) when every column's type
    allows and every record has a text id; else (or to word a refusal) as `from_ipc`."""
    if not data:
        return []
    table = arrow_codec.ipc_to_table(data, what)
    arrow_codec.check_storable(table)
    id_column = key if key and key != "_id" else "_id"
    if id_column in table.column_names:
        ids = table.column(id_column).combine_chunks()
        if (pat.is_string(ids.type) or pat.is_large_string(ids.type)) and ids.null_count == 0:
            try:
                blobs = arrow_bson.encode(table, ids)
            except (arrow_bson.OutOfRange, pa.ArrowException):
                blobs = None  # the dict path says which column, or what else is wrong
            if blobs is not None:
                return _encoded(table, ids, blobs, id_column)
    return bson_codec.with_key_as_id(arrow_codec.table_to_documents(table), key)


def _encoded(table: pa.Table, ids: pa.Array, blobs: pa.Array, id_column: str) -> EncodedDocuments:
    id_list = [bson_codec.check_id(value, id_column) for value in ids.to_pylist()]
    sizes = pc.binary_length(blobs)
    largest = pc.max(sizes).as_py() or 0
    if largest > bson_codec.MAX_DOCUMENT_BYTES:
        index = pc.index(sizes, largest).as_py()
        raise InvalidArgument(
            f"document {id_list[index]!r} is {largest} bytes; the limit is {bson_codec.MAX_DOCUMENT_BYTES}"
        )
    fields = {
        name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
        for name in KEPT_FIELDS
    }
    return EncodedDocuments(id_list, blobs.to_pylist(), fields)


def from_json(text: str, doc_id: str) -> dict:
    """The document stored under `doc_id`, from extended JSON; its `_id`, if given, must agree."""
    try:
        doc = json_util.loads(text)
    except Exception as exc:  # json_util raises many kinds: InvalidId, decimal, ...
        raise InvalidArgument(f"document {doc_id!r} is not valid (extended) JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"document {doc_id!r} must be a JSON object")
    if doc.setdefault("_id", doc_id) != doc_id:
        raise InvalidArgument(f"document _id {doc['_id']!r} differs from the id {doc_id!r}")
    return bson_codec.check_document(doc)


def to_json(doc: dict) -> str:
    return json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS)
