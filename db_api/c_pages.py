"""Pages of stored BSON turned into Arrow in C, for scans that ask for text, boolean and double
columns only (raw records as text for the clean, cleaned records typed for the process step).

Raw records are text but for the time each was received (a BSON datetime, which the web app and
the API set), and the clean step scans them as text. The general path (`scan_pages.encode_page`)
decodes each document to a dict and builds Arrow from Python values: 139 ms for a page of 21,000
raw records, most of a scan's cost in the db-api. pymongoarrow (MongoDB's BSON-to-Arrow library)
reads the same BSON without Python objects in 31 ms; 20,000 cleaned records typed, 415 -> 38 ms.

It is strict: a value of another BSON type (a number in a text column, text or an int32 in a
boolean one, a document, ...) raises, and then the page takes the general path, which converts
such values or refuses them. A double column takes int32 values and booleans as the general path
does (1.0 for true); a 64-bit integer there, which the general path refuses when a double cannot
hold it exactly, sends the page to the general path. In a text scan (`as_text`) a field that is a
datetime in a page's first document is read as one, and written as text here exactly as the
general path writes it (ISO 8601 in UTC); a page where it is anything else in another document
takes the general path. One exception: pymongoarrow reads a NaN double as null, where the general
path keeps NaN (or writes 'NaN'); so a page where an asked field may be a NaN double goes the
general path too. Both paths give the same batches; only the common pages are taken here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import bson
import pyarrow as pa
import pyarrow.compute as pc
from bson.errors import BSONError
from pymongoarrow.context import PyMongoArrowContext
from pymongoarrow.schema import Schema

from pipeline_lib.wire.bson_codec import MAX_DATETIME_MS, MIN_DATETIME_MS

STAMPS = pa.timestamp("ms")  # how BSON keeps a datetime: milliseconds since the epoch, in UTC
TYPES = (pa.string(), pa.bool_(), pa.float64())  # the column types read here

# Every NaN double has its exponent's bits all set: its two high bytes (little-endian, last) are
# 0xF0-0xFF then 0x7F or 0xFF. Valid UTF-8 never has that pair (0xF5-0xFF never occur, and a
# lead byte 0xF0-0xF4 is followed by 0x80-0xBF), so in text documents only a length can, and in
# pages with datetimes their bytes now and then. Past this many high bytes (text full of DEL
# characters, say) a page is searched for the asked fields as doubles instead (`_holds`).
_MAX_HIGH_BYTES = 20_000
_DOUBLE, _INT64 = b"\x01", b"\x12"  # the BSON type bytes that start such elements


def _may_hold_nan(stream: bytes, schema: pa.Schema) -> bool:
    """Whether a document of `stream` may hold one of `schema`'s fields as a NaN double: the two
    bytes every NaN double ends with, as the last of a double element of such a field (memchr
    speed; a Python step per 0x7F or 0xFF byte, at most `_MAX_HIGH_BYTES` of them)."""
    headers = [_header(_DOUBLE, field.name) for field in schema]
    seen = 0
    for high in (0x7F, 0xFF):
        at = stream.find(high, 1)
        while at != -1:
            seen += 1
            if seen > _MAX_HIGH_BYTES:
                return _holds(stream, _DOUBLE, schema)
            # The element: 0x01, the name, a NUL, then the 8 bytes of the value, ending here.
            if stream[at - 1] >= 0xF0 and any(stream.startswith(h, at - 7 - len(h)) for h in headers):
                return True
            at = stream.find(high, at + 1)
    return False


def _header(kind: bytes, name: str) -> bytes:
    """How an element of BSON type `kind` named `name` starts: the type byte, the name, a NUL."""
    return kind + name.encode() + b"\x00"


def _holds(stream: bytes, kind: bytes, fields: Iterable[pa.Field]) -> bool:
    """Whether a document of `stream` may hold one of `fields` as an element of BSON type `kind`:
    the bytes that start such an element are in it (or, by chance, inside some text)."""
    return any(_header(kind, field.name) in stream for field in fields)


def _datetime_fields(first: bytes, schema: pa.Schema) -> set[str] | None:
    """The text fields of `schema` that are datetimes in the document `first`; None if it cannot
    be read."""
    try:
        doc = bson.decode(first)
    except (BSONError, ValueError, OverflowError):  # a datetime beyond the years 1 to 9999, say
        return None
    return {f.name for f in schema if f.type == pa.string() and isinstance(doc.get(f.name), dt.datetime)}


def _iso_text(stamps: pa.Array) -> pa.Array | None:
    """Datetimes as the general path writes them, `datetime.isoformat()` in UTC (microseconds only
    when there are any; BSON keeps milliseconds); None for one beyond the years 1 to 9999."""
    millis = stamps.cast(pa.int64())
    low, high = pc.min_max(millis).values()
    if low.is_valid and (low.as_py() < MIN_DATETIME_MS or high.as_py() > MAX_DATETIME_MS):
        return None
    whole = pc.floor_temporal(stamps, unit="second")
    text = pc.strftime(whole.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
    fraction = pc.subtract(millis, whole.cast(pa.int64()))  # 0 to 999 ms, also before 1970
    digits = pc.binary_join_element_wise(".", pc.utf8_lpad(fraction.cast(pa.string()), 3, "0"), "000", "")
    return pc.binary_join_element_wise(text, pc.if_else(pc.equal(fraction, 0), "", digits), "+00:00", "")


def takes(schema: pa.Schema | None, as_text: bool = True) -> bool:
    """Whether pages scanned into `schema` can be read here: every column text (in a text scan,
    `as_text`, which turns every value into text before any cast) or else text, boolean or
    double, named without the dots and brackets pymongoarrow reads as paths into documents."""
    if schema is None or not len(schema):
        return False
    types = (pa.string(),) if as_text else TYPES
    return all(field.type in types and "." not in field.name and "[" not in field.name for field in schema)


def stream_batch(stream: bytes, count: int, schema: pa.Schema, as_text: bool = True) -> pa.RecordBatch | None:
    """The `schema` columns (which `takes`) of the `count` documents in `stream` (their BSON one
    after another, a page as it crosses to a scan worker process) as one batch, missing fields and
    nulls as null; None when a value is not of its column's type, for the general path to
    convert, word or refuse. `as_text`: the scan writes datetimes in text columns as text (the
    general path casts them otherwise)."""
    # pymongoarrow rounds a 64-bit integer a double cannot hold, where the general path refuses it.
    doubles = [field for field in schema if field.type == pa.float64()]
    if _may_hold_nan(stream, schema) or _holds(stream, _INT64, doubles):
        return None
    dates = _datetime_fields(_first(stream), schema) if as_text else set()
    if dates is None:
        return None
    context = PyMongoArrowContext(Schema({f.name: STAMPS if f.name in dates else f.type for f in schema}))
    try:
        context.process_bson_stream(stream)
        table = context.finish()
        columns = [table.column(field.name).combine_chunks() for field in schema]
        columns = [_iso_text(c) if c.type == STAMPS else c for c in columns]
        if any(c is None for c in columns):
            return None
        batch = pa.RecordBatch.from_arrays(columns, schema=schema)
    except (TypeError, ValueError, KeyError, pa.ArrowException):
        return None
    # A document naming a field twice (never written by the db-api) would add a value.
    return batch if batch.num_rows == count else None


def _first(stream: bytes) -> bytes:
    """The first document of a stream: BSON starts with its size (little-endian int32)."""
    return stream[: int.from_bytes(stream[:4], "little")]
