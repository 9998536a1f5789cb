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


def dicts_from_ipc(data: bytes, key: str | None, what: str) -> list[dict]:
    """The records of an Arrow IPC stream (`what` names it in errors), with column `key` as `_id`,
    as dicts."""
    if not data:
        return []
    table = arrow_codec.ipc_to_table(data, what)
    arrow_codec.check_storable(table)
    return _as_dicts(table, key)


def from_ipc(data: bytes, key: str | None, what: str) -> Sequence[dict]:
    """As `dicts_from_ipc`, encoded as BSON column by column (`arrow_bson`) when every column's
    type allows and every record has a text id; else (or to word a refusal) as `dicts_from_ipc`."""
    if not data:
        return []
    table = arrow_codec.ipc_to_table(data, what)
    arrow_codec.check_storable(table)
    encoded = _encoded(table, key)
    if encoded is not None:
        return encoded
    return _as_dicts(table, key)


def _as_dicts(table: pa.Table, key: str | None) -> list[dict]:
    """The records of a table `check_storable` passed, as dicts with column `key` as `_id`."""
    return bson_codec.with_key_as_id(arrow_codec.checked_table_to_documents(table), key)


def _encoded(table: pa.Table, key: str | None) -> EncodedDocuments | None:
    """The records encoded by `arrow_bson`; None where the dict path must read them: an id column
    that is not all text, an `_id` column beside another key (the dict path reads and replaces
    it), a kept field that is not a list of text, a type `arrow_bson` does not cover, or values
    it cannot encode (the dict path words the refusal)."""
    id_column = key if key and key != "_id" else "_id"
    if id_column not in table.column_names or (id_column != "_id" and "_id" in table.column_names):
        return None
    ids = table.column(id_column).combine_chunks()
    if not (pat.is_string(ids.type) or pat.is_large_string(ids.type)) or ids.null_count:
        return None
    kept = [table.column(name) for name in KEPT_FIELDS if name in table.column_names]
    if not all(pat.is_null(c.type) or _is_text_list(c.type) for c in kept):
        return None
    try:
        blobs = arrow_bson.encode(table, ids)
    except (arrow_bson.OutOfRange, pa.ArrowException, ValueError, TypeError):
        return None
    if blobs is None:
        return None
    id_list = [bson_codec.check_id(value, id_column) for value in ids.to_pylist()]
    oversized = pc.greater(pc.binary_length(blobs), bson_codec.MAX_DOCUMENT_BYTES)
    if pc.any(oversized).as_py():
        first = pc.index(oversized, True).as_py()
        raise InvalidArgument(
            f"document {id_list[first]!r} is {len(blobs[first].as_py())} bytes; "
            f"the limit is {bson_codec.MAX_DOCUMENT_BYTES}"
        )
    fields = {
        name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
        for name in KEPT_FIELDS
    }
    return EncodedDocuments(id_list, blobs.to_pylist(), fields)


def _is_text_list(type_: pa.DataType) -> bool:
    lists = pat.is_list(type_) or pat.is_large_list(type_)
    return lists and (pat.is_string(type_.value_type) or pat.is_large_string(type_.value_type))


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
