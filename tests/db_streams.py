"""Holding a db-api's stream slots from a test: WriteBatches streams that send nothing yet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from pipeline_lib.wire.proto import dbapi_pb2 as pb
from pipeline_lib.wire.proto import dbapi_pb2_grpc
from tests.conftest import TOKEN

METADATA = (("authorization", f"Bearer {TOKEN}"),)


@contextmanager
def stalled_writes(port: int, count: int) -> Iterator[tuple[list[grpc.Future], threading.Event]]:
    """`count` WriteBatches streams that send nothing until the event is set."""
    release = threading.Event()

    def nothing_yet() -> Iterator[pb.WriteBatchesRequest]:
        release.wait()
        return
        yield

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = dbapi_pb2_grpc.DbApiStub(channel)
        calls = [stub.WriteBatches.future(nothing_yet(), metadata=METADATA, timeout=60) for _ in range(count)]
        try:
            yield calls, release
        finally:
            release.set()
            for call in calls:
                call.cancel()
