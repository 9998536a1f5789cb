"""Pages of stored BSON turned into Arrow in C, for scans that ask for text columns only.

Raw records are text, and the clean step scans them as text. The general path
(`scan_pages.encode_page`) decodes each document to a dict and builds Arrow from Python values:
139 ms for a page of 21,000 raw records, most of a scan's cost in the db-api. pymongoarrow
(MongoDB's BSON-to-Arrow library) reads the same BSON without Python objects in 31 ms.

It is strict: a value that is neither text nor null (a number, a document, a date, ...) raises,
and then the page takes the general path, which writes such values as text (JSON) or refuses
them. One exception: it reads a NaN double as null, where the general path writes 'NaN'; so a
page holding the bytes any NaN double holds goes the general path too. Both paths give the same
batches; only the common all-text page is taken here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
from pymongoarrow.context import PyMongoArrowContext
from pymongoarrow.schema import Schema

# Every NaN double has its exponent's bits all set: its two high bytes (little-endian, last) are
# 0xF0-0xFF then 0x7F or 0xFF. Valid UTF-8 never has that pair (0xF5-0xFF never occur, and a
# lead byte 0xF0-0xF4 is followed by 0x80-0xBF), so in text documents only a length can. Pages
# with more high bytes than this are not searched (text full of DEL characters, say).
_MAX_HIGH_BYTES = 1_000


def _may_hold_nan(stream: bytes) -> bool:
    """Whether `stream` has the two bytes that end every NaN double (memchr-speed, bounded)."""
    seen = 0
    for high in (0x7F, 0xFF):
        at = stream.find(high, 1)
        while at != -1:
            seen += 1
            if stream[at - 1] >= 0xF0 or seen > _MAX_HIGH_BYTES:
                return True
            at = stream.find(high, at + 1)
    return False


def takes(schema: pa.Schema | None) -> bool:
    """Whether pages scanned into `schema` can be read here: every column text, named without
    the dots and brackets pymongoarrow reads as paths into nested documents."""
    if schema is None or not len(schema):
        return False
    return all(
        field.type == pa.string() and "." not in field.name and "[" not in field.name for field in schema
    )


def text_batch(blobs: Sequence[bytes], schema: pa.Schema) -> pa.RecordBatch | None:
    """The documents' `schema` columns (which `takes`) as one batch, missing fields and nulls as
    null; None when a value is not text, for the general path to word or refuse."""
    stream = b"".join(blobs)
    if _may_hold_nan(stream):
        return None
    context = PyMongoArrowContext(Schema({field.name: pa.string() for field in schema}))
    try:
        context.process_bson_stream(stream)
        table = context.finish()
        columns = [table.column(field.name).combine_chunks() for field in schema]
        batch = pa.RecordBatch.from_arrays(columns, schema=schema)
    except (TypeError, ValueError, KeyError, pa.ArrowException):
        return None
    # A document naming a field twice (never written by the db-api) would add a value.
    return batch if batch.num_rows == len(blobs) else None
