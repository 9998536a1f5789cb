"""Documents as the store keeps them: validation, ids and BSON encoding.

Every document is a dict with a string `_id`. Field names follow MongoDB's rules so that both
backends accept the same documents: no `$` at the start, no `.`, no NUL, not empty.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterable, Mapping
from typing import Any

import bson
from bson.codec_options import CodecOptions, TypeRegistry
from bson.decimal128 import Decimal128
from bson.errors import BSONError, InvalidDocument

from pipeline_lib.wire.errors import InvalidArgument

# A document as the store keeps it and BSON decodes it: field names to values.
Document = dict[str, Any]

MAX_ID_LENGTH = 512
# Top-level field the MongoDB backend uses for ordering; reserved in both backends alike.
SEQ_FIELD = "_wb_seq"
# MongoDB's own limit on one document; larger ones could not move to the MongoDB backend.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
# Nesting levels; below MongoDB's 100 and Arrow IPC's 64, so every stored document can be scanned.
MAX_DEPTH = 50
# The range of dates Python (and so every reader) can decode: years 1 to 9999.
MIN_DATETIME_MS = -62135596800000
MAX_DATETIME_MS = 253402300799999


def _encode_fallback(value: Any) -> Any:
    """Values Arrow hands us that BSON has no type for, mapped to the nearest BSON type."""
    if isinstance(value, decimal.Decimal):
        try:
            return Decimal128(value)
        except (decimal.Inexact, decimal.InvalidOperation):
            raise InvalidArgument(f"decimal {value} does not fit BSON's 34-digit Decimal128") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, int):  # BSON hands over the whole numbers its 64 bits cannot hold
        raise InvalidArgument(f"the whole number {value} does not fit BSON's 64 bits: store it as text")
    raise InvalidArgument(f"values of type {type(value).__name__} cannot be stored")


ENCODE_OPTIONS: CodecOptions[Document] = CodecOptions(
    type_registry=TypeRegistry(fallback_encoder=_encode_fallback)
)
# Datetimes come back timezone-aware in UTC, which Arrow maps to timestamp[us, tz=UTC].
DECODE_OPTIONS: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=dt.UTC)


def new_id() -> str:
    """An id for a document sent without one: an ObjectId's hex, which sorts by creation time."""
    return str(bson.ObjectId())


def check_id(value: Any, what: str = "_id") -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise InvalidArgument(
            f"{what} must be 1 to {MAX_ID_LENGTH} characters without NUL, got {value[:40]!r}"
        )
    return value


def check_field_name(name: Any, path: str = "") -> None:
    where = f"{path}.{name}" if path else str(name)
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"field names must be non-empty strings (at {where!r})")
    if not path and name == SEQ_FIELD:
        raise InvalidArgument(f"field name {SEQ_FIELD!r} is reserved by the db-api")
    if name.startswith("$"):
        raise InvalidArgument(f"field name {where!r} starts with '$', which MongoDB reserves")
    if "." in name or "\x00" in name:
        raise InvalidArgument(f"field name {where!r} contains '.' or NUL, which MongoDB forbids")


def check_keys(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise InvalidArgument if any field name, at any depth, breaks MongoDB's rules, or if the
    value nests deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"value at {path!r} nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_field_name(key, path)
            check_keys(item, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_keys(item, f"{path}[{index}]", depth + 1)


def check_document(doc: Any) -> Document:
    if not isinstance(doc, dict):
        raise InvalidArgument(f"a document must be an object, got {type(doc).__name__}")
    check_id(doc.get("_id"))
    check_keys(doc)
    return doc


def encode(doc: Mapping[str, Any]) -> bytes:
    try:
        data = bson.encode(doc, codec_options=ENCODE_OPTIONS)
    except (InvalidDocument, OverflowError, InvalidArgument) as exc:
        raise InvalidArgument(f"document {doc.get('_id')!r} cannot be stored as BSON: {exc}") from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidArgument(
            f"document {doc.get('_id')!r} is {len(data)} bytes; the limit is {MAX_DOCUMENT_BYTES}"
        )
    return data


def decode(data: bytes) -> Document:
    try:
        return bson.decode(data, codec_options=DECODE_OPTIONS)
    except (BSONError, InvalidDocument, ValueError) as exc:
        raise InvalidArgument(f"malformed BSON document: {exc}") from exc


def decode_many(blobs: Iterable[bytes]) -> list[Document]:
    """Decode for bulk reads: datetimes come back naive (in UTC), which is much faster."""
    return bson.decode_all(b"".join(blobs))


def with_key_as_id(docs: list[Document], key: str | None) -> list[Document]:
    """Set each document's `_id` from its `key` field (kept as is) and check every id.

    Field names are not checked here: these documents come from an Arrow batch whose schema
    (every column and nested field name) was checked once for the whole batch.
    """
    if key and key != "_id":
        for doc in docs:
            value = doc.get(key)
            if value is None:
                raise InvalidArgument(f"a record has no value for its key field {key!r}")
            doc["_id"] = check_id(value, key)
    else:
        for doc in docs:
            check_id(doc.get("_id"))
    return docs


def to_text(value: Any) -> str | None:
    """A stored value as text: strings unchanged, null as null, numbers, booleans, lists and
    objects as compact JSON, other scalars (dates, decimals, ids) in their plain text form."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | list | tuple | dict):
        return json.dumps(value, default=_plain_text, ensure_ascii=False, separators=(",", ":"))
    return _plain_text(value)


def _plain_text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
