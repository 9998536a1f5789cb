"""Arrow IPC on the wire, documents in the store: conversions both ways.

Bulk reads and writes move Arrow IPC record batches (columnar, ~40x faster than a message per
record); the store keeps BSON documents. This module is the only place the two meet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.objectid import ObjectId

from pipeline_lib.wire.bson_codec import (
    MAX_DATETIME_MS,
    MAX_DEPTH,
    MIN_DATETIME_MS,
    Document,
    check_field_name,
    to_text,
)
from pipeline_lib.wire.errors import InvalidArgument, TooLarge
from pipeline_lib.wire.ipc_compression import has_compressed_bodies

# Values (cells, counting nested list items and struct fields) one message may hold: a few
# hundred bytes of IPC can describe millions of nulls, and each becomes a Python object here.
MAX_VALUES_PER_MESSAGE = 5_000_000
# Bytes a message's records may take as BSON (a bound: values, their data and the field names
# each value repeats). A few KB of IPC can name a long field once for millions of values.
MAX_BSON_BYTES_PER_MESSAGE = 512 * 1024 * 1024
_PER_MS = {"s": 0.001, "ms": 1, "us": 1_000, "ns": 1_000_000}


def table_to_ipc(data: pa.Table | pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    stream: bytes = sink.getvalue().to_pybytes()
    return stream


def ipc_to_table(data: bytes, what: str = "batch") -> pa.Table:
    """Read one Arrow IPC stream; malformed input is an INVALID_ARGUMENT, never a crash, and a
    compressed one is refused before it is inflated."""
    buffer = pa.py_buffer(data)
    try:
        compressed = has_compressed_bodies(buffer)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidArgument(f"the {what} is not a valid Arrow IPC stream: {exc}") from None
    if compressed:
        raise InvalidArgument(
            f"the {what} is a compressed Arrow IPC stream: send it uncompressed (a compressed message "
            "could inflate to any size)"
        )
    try:
        with pa.ipc.open_stream(buffer) as reader:
            table = reader.read_all()
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"the {what} is not a valid Arrow IPC stream: {exc}") from None
    return table


def schema_to_bytes(schema: pa.Schema) -> bytes:
    serialized: bytes = schema.serialize().to_pybytes()
    return serialized


def schema_from_bytes(data: bytes) -> pa.Schema:
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(data))
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"arrow_schema is not a serialized Arrow schema: {exc}") from None
    if len(set(schema.names)) != len(schema.names):
        raise InvalidArgument(f"arrow_schema has duplicate column names: {schema.names}")
    return schema


def _check_type(type_: pa.DataType, where: str, depth: int = 0) -> None:
    """Only types that have a BSON equivalent, nested at most MAX_DEPTH levels, may be written."""
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"column {where!r} nests deeper than {MAX_DEPTH} levels")
    if pat.is_struct(type_):
        for child in type_:
            check_field_name(child.name, where)
            _check_type(child.type, f"{where}.{child.name}", depth + 1)
        return
    if pat.is_list(type_) or pat.is_large_list(type_) or pat.is_fixed_size_list(type_):
        _check_type(type_.value_type, f"{where}[]", depth + 1)
        return
    if pat.is_dictionary(type_):
        # A few bytes of indices can repeat a large value any number of times once expanded.
        raise InvalidArgument(
            f"column {where!r} is dictionary-encoded (a pandas category?): send its values "
            "(the workbench client does)"
        )
    storable = (
        pat.is_null(type_)
        or pat.is_boolean(type_)
        or pat.is_integer(type_)
        or pat.is_floating(type_)
        or pat.is_string(type_)
        or pat.is_large_string(type_)
        or pat.is_binary(type_)
        or pat.is_large_binary(type_)
        or pat.is_timestamp(type_)
        or pat.is_date(type_)
        or pat.is_decimal(type_)
    )
    if not storable:
        raise InvalidArgument(f"column {where!r} has Arrow type {type_}, which cannot be stored")


def _value_count(array: pa.Array) -> int:
    """Cells in an array, counting the items of lists and the fields of structs."""
    count = len(array)
    if pat.is_list(array.type) or pat.is_large_list(array.type) or pat.is_fixed_size_list(array.type):
        count += _value_count(array.flatten())
    elif pat.is_struct(array.type):
        count += sum(_value_count(array.field(i)) for i in range(array.type.num_fields))
    return count


def _names_bytes(array: pa.Array, name_bytes: int) -> int:
    """Bytes the field names of `array`'s values take in BSON: each value repeats its field's name
    (a list item its index, at most 10 digits) with a type byte and a NUL."""
    total = len(array) * (name_bytes + 2)
    if pat.is_list(array.type) or pat.is_large_list(array.type) or pat.is_fixed_size_list(array.type):
        total += _names_bytes(array.flatten(), 10)
    elif pat.is_struct(array.type):
        children = array.type
        total += sum(
            _names_bytes(array.field(i), len(children.field(i).name.encode()))
            for i in range(children.num_fields)
        )
    return total


def table_to_documents(table: pa.Table) -> list[Document]:
    """Rows as dicts, after checking every column name and type can be stored."""
    check_storable(table)
    return checked_table_to_documents(table)


def checked_table_to_documents(table: pa.Table) -> list[Document]:
    """Rows as dicts, of a table `check_storable` already passed."""
    names = table.column_names
    try:
        # Column-wise conversion then zip is the fastest pure-pyarrow route to row dicts.
        columns = [_column_values(name, column) for name, column in zip(names, table.columns, strict=True)]
    except (ValueError, OverflowError, pa.ArrowException) as exc:
        raise InvalidArgument(f"a batch holds values that cannot be stored: {exc}") from None
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def check_storable(table: pa.Table) -> None:
    """Every column name and type can be stored, and the batch holds at most
    MAX_VALUES_PER_MESSAGE values and MAX_BSON_BYTES_PER_MESSAGE bytes as BSON."""
    for field in table.schema:
        check_field_name(field.name)
        _check_type(field.type, field.name)
    names = table.column_names
    if len(set(names)) != len(names):
        raise InvalidArgument(f"a batch has duplicate column names: {names}")
    values = sum(_value_count(chunk) for column in table.columns for chunk in column.chunks)
    if values > MAX_VALUES_PER_MESSAGE:
        raise TooLarge(
            f"a batch holds {values:,} values; the limit is {MAX_VALUES_PER_MESSAGE:,} per message: "
            "send smaller batches"
        )
    name_bytes = sum(
        _names_bytes(chunk, len(name.encode()))
        for name, column in zip(names, table.columns, strict=True)
        for chunk in column.chunks
    )
    # Each value: at most 8 bytes of its own (a text's length and NUL, a number), 5 per document.
    bound = name_bytes + 16 * values + table.nbytes
    if bound > MAX_BSON_BYTES_PER_MESSAGE:
        raise TooLarge(
            f"a batch would take up to {bound:,} bytes as BSON; the limit is "
            f"{MAX_BSON_BYTES_PER_MESSAGE:,} per message: send smaller batches or shorter field names"
        )


def _column_values(name: str, column: pa.ChunkedArray) -> list[Any]:
    if pat.is_timestamp(column.type):
        # BSON keeps milliseconds since the epoch (naive timestamps are taken as UTC); DatetimeMS
        # skips building a datetime per value, which is ~100x slower.
        raw = column.cast(pa.int64())
        low, high = (v.as_py() for v in pc.min_max(raw).values())
        per_ms = _PER_MS[column.type.unit]
        if low is not None and (low < MIN_DATETIME_MS * per_ms or high > MAX_DATETIME_MS * per_ms):
            raise InvalidArgument(f"column {name!r} holds timestamps outside the years 1 to 9999")
        millis = column.cast(pa.timestamp("ms", tz=column.type.tz), safe=False).cast(pa.int64())
        return [None if v is None else DatetimeMS(v) for v in millis.to_pylist()]
    values: list[Any] = column.to_pylist()
    return values


def _column_names(
    docs: Sequence[Document], columns: Sequence[str], inferred: dict[str, pa.Array] | None
) -> list[str]:
    if columns:
        return ["_id", *[c for c in columns if c != "_id"]]
    if inferred is not None:
        return ["_id", *[name for name in inferred if name != "_id"]]
    seen: dict[str, None] = {"_id": None}
    for doc in docs:
        for key in doc:
            seen.setdefault(key, None)
    return list(seen)


def _infer_columns(docs: Sequence[Document]) -> dict[str, pa.Array] | None:
    """All columns at once, in first-seen order, by Arrow's C++ inference; None if kinds mix."""
    if not docs:
        return None
    try:
        struct = pa.array(docs)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    return {field.name: struct.field(i) for i, field in enumerate(struct.type)}


def _arrow_value(value: object) -> object:
    """BSON scalar types Arrow does not know, as the nearest value it does."""
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, ObjectId):
        return str(value)
    return value


def _typed_array(values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        try:
            array = pa.array([_arrow_value(v) for v in values])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # Mixed kinds in one column (e.g. numbers and text): keep every value, as text.
            return pa.array([to_text(v) for v in values], type=pa.string())
    return _labelled_utc(array)


def _labelled_utc(array: pa.Array) -> pa.Array:
    if pat.is_timestamp(array.type) and array.type.tz is None:
        # Scans decode BSON dates as naive UTC (faster than tz-aware); say so in the type.
        return array.cast(pa.timestamp(array.type.unit, tz="UTC"))
    return array


def documents_to_batch(
    docs: Sequence[Document],
    columns: Sequence[str] = (),
    *,
    as_text: bool = False,
    schema: pa.Schema | None = None,
) -> pa.RecordBatch:
    """Build one record batch from documents: columns in first-seen order, `_id` first.

    `as_text` makes every column a string (strings as stored, other values as JSON text);
    `schema` casts the batch to a fixed schema (missing columns become null).
    """
    inferred = _infer_columns(docs)
    names = [f.name for f in schema] if schema is not None else _column_names(docs, columns, inferred)
    arrays = []
    for name in names:
        found = inferred.get(name) if inferred is not None else None
        array = _typed_array([doc.get(name) for doc in docs]) if found is None else _labelled_utc(found)
        if as_text:
            array = _as_text(array, name, docs)
        if schema is not None:
            array = _cast(array, schema.field(name).type, name)
        arrays.append(array)
    if schema is not None:
        return pa.RecordBatch.from_arrays(arrays, schema=schema)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _as_text(array: pa.Array, name: str, docs: Sequence[Document]) -> pa.Array:
    if pat.is_string(array.type):
        return array
    if pat.is_null(array.type):
        return array.cast(pa.string())
    return pa.array([to_text(doc.get(name)) for doc in docs], type=pa.string())


def _cast(array: pa.Array, type_: pa.DataType, name: str) -> pa.Array:
    if array.type == type_:
        return array
    try:
        return array.cast(type_, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InvalidArgument(
            f"column {name!r} holds {array.type} values that do not fit the requested type {type_}: {exc}"
        ) from None
