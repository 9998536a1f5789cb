"""Arrow records encoded as BSON documents column by column, in Arrow's C++ kernels.

The db-api stores what WriteBatches and CommitClean bring as BSON. Turning a batch into Python
dicts and encoding each (`arrow_codec.table_to_documents`, `bson_codec.encode`) cost about 11 us a
record, most of the db-api's time in a clean; here each column becomes its BSON elements in a few vectorised
passes (the bytes of each element: type, name, value) and a record's elements are concatenated
into its document. The bytes are exactly what `bson.encode` makes of the dict (the `_id` first,
then the columns in order; an int as int32 when it fits, else int64; null as BSON null), which
the tests check type by type.

Only the types `encodable` accepts are encoded here; `encode` returns None for a table with any
other (binary, dates, decimals, unsigned 64-bit, fixed-size lists, half floats, timestamps inside
lists or structs, structs naming a field twice), and the caller takes the dict path, which also
words every refusal.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from pipeline_lib.wire.bson_codec import MAX_DATETIME_MS, MIN_DATETIME_MS

BINARY = pa.binary()
_NUL = pa.scalar(b"\x00", BINARY)
_EMPTY = pa.scalar(b"", BINARY)
_INT32 = (-(2**31), 2**31 - 1)
_PER_MS = {"s": 0.001, "ms": 1, "us": 1_000, "ns": 1_000_000}
_SMALL_INTS = (pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16())  # always int32 in BSON
_WIDE_INTS = (pa.int64(), pa.uint32())  # int32 when the value fits, else int64


def encodable(type_: pa.DataType, nested: bool = False) -> bool:
    """Whether `encode` covers columns of this type (nested types: all their children too).
    Timestamps only as columns: the dict path makes nested ones Python datetimes, which round
    differently and may be refused in their time zone. Structs with a name twice are refused there."""
    if pat.is_struct(type_):
        names = [field.name for field in type_]
        return len(set(names)) == len(names) and all(encodable(field.type, True) for field in type_)
    if pat.is_list(type_) or pat.is_large_list(type_):
        return encodable(type_.value_type, True)
    return (
        pat.is_null(type_)
        or pat.is_boolean(type_)
        or pat.is_string(type_)
        or pat.is_large_string(type_)
        or type_ in (pa.float32(), pa.float64())
        or type_ in _SMALL_INTS
        or type_ in _WIDE_INTS
        or (pat.is_timestamp(type_) and not nested)
    )


class OutOfRange(ValueError):
    """A timestamp outside the years BSON readers decode (1 to 9999)."""


def encode(table: pa.Table, ids: pa.Array) -> pa.Array | None:
    """Each record of `table` as one BSON document (a binary array), with `ids` (strings, checked
    by the caller) as `_id` first and every column but `_id` after it, in order; None if a column
    has a type `encodable` does not cover. Raises `OutOfRange` for a timestamp BSON readers cannot
    decode."""
    if not all(encodable(field.type) for field in table.schema):
        return None
    columns = [(name, table.column(name).combine_chunks()) for name in table.column_names if name != "_id"]
    fields = [("_id", ids), *columns]
    return _documents([_elements(_prefix(name), array) for name, array in fields], table.num_rows)


def _prefix(name: str) -> pa.Scalar:
    """A field's name as it follows the element's type byte: the name and a NUL."""
    return pa.scalar(name.encode() + b"\x00", BINARY)


def _fixed(values: np.ndarray, dtype: str) -> pa.Array:
    """Each value's bytes (little-endian) as a binary array."""
    data = np.ascontiguousarray(values, dtype=dtype)
    width = data.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(data), [None, pa.py_buffer(data)])
    return fixed.cast(BINARY)


def _numbers(array: pa.Array, fill: object, dtype: str) -> np.ndarray:
    """The values as a numpy array, nulls as `fill` (their bytes are never used)."""
    return np.asarray(pc.fill_null(array, fill).to_numpy(zero_copy_only=False), dtype=dtype)


def _join(*parts: pa.Array | pa.Scalar) -> pa.Array:
    """Row by row, the parts' bytes one after the other."""
    return pc.binary_join_element_wise(*parts, _EMPTY)


def _lengths(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _documents(elements: list[pa.Array], rows: int) -> pa.Array:
    """Per row: the document of these elements (its int32 size, the elements, a NUL)."""
    size = np.full(rows, 5, dtype=np.int64)
    for column in elements:
        size += _lengths(column)
    return _join(_fixed(size, "<i4"), *elements, _NUL)


def _elements(prefix: pa.Array | pa.Scalar, array: pa.Array) -> pa.Array:
    """Per row, the element `type byte + prefix + value` (a null: type 0x0A and the prefix).
    `prefix` is one field's name (a scalar) or, for list items, each item's index."""
    null = _join(pa.scalar(b"\x0a", BINARY), prefix)
    if pat.is_null(array.type):
        return null if isinstance(null, pa.Array) else pa.array([null.as_py()] * len(array), BINARY)
    type_byte, value = _value(array)
    present = _join(type_byte, prefix, value)
    if array.null_count == 0:
        return present
    return pc.if_else(pc.is_valid(array), present, null)


def _value(array: pa.Array) -> tuple[pa.Array | pa.Scalar, pa.Array]:
    """(type byte, value bytes) per row; what rows that are null get is never used."""
    type_ = array.type
    if pat.is_string(type_) or pat.is_large_string(type_):
        text = pc.fill_null(array.cast(BINARY), b"")
        return _byte(0x02), _join(_fixed(_lengths(text) + 1, "<i4"), text, _NUL)
    if pat.is_boolean(type_):
        return _byte(0x08), _fixed(_numbers(array, False, "u1"), "u1")
    if type_ in (pa.float32(), pa.float64()):
        return _byte(0x01), _fixed(_numbers(array.cast(pa.float64()), 0.0, "<f8"), "<f8")
    if type_ in _SMALL_INTS:
        return _byte(0x10), _fixed(_numbers(array, 0, "<i8"), "<i4")
    if type_ in _WIDE_INTS:
        values = _numbers(array, 0, "<i8")
        small = (values >= _INT32[0]) & (values <= _INT32[1])
        types = pc.if_else(pa.array(small), _byte(0x10), _byte(0x12))
        return types, pc.if_else(pa.array(small), _fixed(values, "<i4"), _fixed(values, "<i8"))
    if pat.is_timestamp(type_):
        return _byte(0x09), _fixed(_milliseconds(array), "<i8")
    if pat.is_struct(type_):
        children = [_elements(_prefix(type_.field(i).name), array.field(i)) for i in range(type_.num_fields)]
        return _byte(0x03), _documents(children, len(array))
    if pat.is_list(type_) or pat.is_large_list(type_):
        return _byte(0x04), _array_documents(array)
    raise TypeError(f"no BSON encoding for Arrow type {type_}")  # `encodable` keeps these out


def _byte(value: int) -> pa.Scalar:
    return pa.scalar(bytes([value]), BINARY)


def _milliseconds(array: pa.Array) -> np.ndarray:
    """As the dict path stores a timestamp: milliseconds since the epoch (cast, not rounded)."""
    unit = array.type.unit
    raw = _numbers(array.cast(pa.int64()), 0, "<i8")
    valid = np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)
    if valid.any():
        low, high = raw[valid].min(), raw[valid].max()
        if low < MIN_DATETIME_MS * _PER_MS[unit] or high > MAX_DATETIME_MS * _PER_MS[unit]:
            raise OutOfRange("a timestamp is outside the years 1 to 9999")
    millis = array.cast(pa.timestamp("ms", tz=array.type.tz), safe=False).cast(pa.int64())
    return _numbers(millis, 0, "<i8")


def _array_documents(array: pa.Array) -> pa.Array:
    """Each list as a BSON array: a document whose keys are the items' indexes "0", "1", ..."""
    items = array.flatten()  # the items of the lists that are not null, in order
    lengths = np.asarray(
        pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    ends = np.cumsum(lengths)
    # Not `list_parent_indices`: it also counts the items under a null list, which `flatten` drops.
    parents = np.repeat(np.arange(len(array), dtype=np.int64), lengths)
    positions = np.arange(len(items), dtype=np.int64) - (ends - lengths)[parents]
    longest = int(lengths.max(initial=0))
    indexes = _join(pa.array(np.arange(longest, dtype=np.int64)).cast(pa.string()).cast(BINARY), _NUL)
    elements = _elements(indexes.take(pa.array(positions)), items)
    offsets = pa.array(np.concatenate([[0], ends]).astype(np.int64))
    per_list = pa.LargeListArray.from_arrays(offsets, elements)
    size = np.bincount(parents, weights=_lengths(elements), minlength=len(array)).astype(np.int64)
    return _join(_fixed(size + 5, "<i4"), pc.binary_join(per_list, _EMPTY), _NUL)
