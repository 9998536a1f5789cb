"""The documents requests carry, decoded and checked: Arrow IPC batches of records, and one
document as extended JSON; and a document as extended JSON for an answer.

The reverse of what `pipeline_lib.wire.requests` builds on the client side. Every refusal is an
`InvalidArgument` that names what was wrong.
"""

from __future__ import annotations

from bson import json_util

from pipeline_lib.wire import arrow_codec, bson_codec
from pipeline_lib.wire.errors import InvalidArgument


def from_ipc(data: bytes, key: str | None, what: str) -> list[dict]:
    """The records of an Arrow IPC stream (`what` names it in errors), with column `key` as `_id`."""
    if not data:
        return []
    table = arrow_codec.ipc_to_table(data, what)
    return bson_codec.with_key_as_id(arrow_codec.table_to_documents(table), key)


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
