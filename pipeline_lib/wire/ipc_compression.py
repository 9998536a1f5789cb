"""Whether an Arrow IPC stream has compressed bodies, read from its messages' headers alone.

A compressed body inflates when read: 33 KB of zstd became 1 GiB in the db-api, so a message's
size would bound nothing. pyarrow decompresses as it reads a batch and exposes no flag, so each
message's header (a flatbuffer, `Message.fbs` of the Arrow format) is read for the `compression`
field of its RecordBatch, or of the RecordBatch inside a DictionaryBatch. Linear in the headers.
"""

from __future__ import annotations

import struct

import pyarrow as pa

_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # MessageHeader union
_HEADER_TYPE, _HEADER = 1, 2  # Message fields
_DICTIONARY_DATA = 1  # DictionaryBatch field: its RecordBatch
_COMPRESSION = 3  # RecordBatch field


def has_compressed_bodies(data: pa.Buffer) -> bool:
    """Whether any message of the stream `data` says its body is compressed. Raises ValueError
    for a header that cannot be read (pyarrow's reader would refuse the stream too)."""
    for message in pa.ipc.MessageReader.open_stream(data):
        if message.type in ("record batch", "dictionary") and _compressed(message.metadata.to_pybytes()):
            return True
    return False


def _compressed(header: bytes) -> bool:
    try:
        message = _target(header, 0)
        kind_at = _field(header, message, _HEADER_TYPE)
        kind = header[kind_at] if kind_at is not None else 0
        body_at = _field(header, message, _HEADER)
        if body_at is None:
            return False
        batch = _target(header, body_at)
        if kind == _DICTIONARY_BATCH:
            data_at = _field(header, batch, _DICTIONARY_DATA)
            if data_at is None:
                return False
            batch, kind = _target(header, data_at), _RECORD_BATCH
        return kind == _RECORD_BATCH and _field(header, batch, _COMPRESSION) is not None
    except (struct.error, IndexError):
        raise ValueError("an Arrow IPC message header cannot be read") from None


def _target(buffer: bytes, at: int) -> int:
    """Where the offset stored at `at` points."""
    return at + int(struct.unpack_from("<I", buffer, at)[0])


def _field(buffer: bytes, table: int, index: int) -> int | None:
    """Where field `index` of the flatbuffer table at `table` lies, or None when it is absent."""
    vtable = table - int(struct.unpack_from("<i", buffer, table)[0])
    size = int(struct.unpack_from("<H", buffer, vtable)[0])
    slot = 4 + 2 * index
    if slot + 2 > size:
        return None
    offset = int(struct.unpack_from("<H", buffer, vtable + slot)[0])
    return table + offset if offset else None
