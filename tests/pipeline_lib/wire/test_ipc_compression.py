"""Compressed Arrow IPC bodies are found from the message headers, for record and dictionary batches."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline_lib.wire.ipc_compression import has_compressed_bodies


def _stream(table: pa.Table, compression: str | None) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write(table)
    return sink.getvalue()


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_compressed_record_batches_are_found(compression: str) -> None:
    table = pa.table({"a": [1, 2, 3]})
    assert not has_compressed_bodies(_stream(table, None))
    assert has_compressed_bodies(_stream(table, compression))


def test_a_compressed_dictionary_batch_is_found() -> None:
    table = pa.table({"a": pa.array(["x", "y", "x"]).dictionary_encode()})
    assert not has_compressed_bodies(_stream(table, None))
    stream = _stream(table, "zstd")
    kinds = [message.type for message in pa.ipc.MessageReader.open_stream(stream)]
    assert kinds == ["schema", "dictionary", "record batch"]
    assert has_compressed_bodies(stream)


def test_a_schema_alone_and_an_empty_stream_have_none() -> None:
    assert not has_compressed_bodies(_stream(pa.table({"a": pa.array([], pa.int64())}), "zstd")[:0])
    empty = pa.BufferOutputStream()
    with pa.ipc.new_stream(empty, pa.schema([("a", pa.int64())])):
        pass
    assert not has_compressed_bodies(empty.getvalue())


def test_an_unreadable_header_is_an_error() -> None:
    stream = bytearray(_stream(pa.table({"a": [1]}), None).to_pybytes())
    stream[8:16] = b"\xff" * 8  # inside the first message's header
    with pytest.raises((ValueError, OSError, pa.ArrowException)):
        has_compressed_bodies(pa.py_buffer(bytes(stream)))
