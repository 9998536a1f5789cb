"""A call its client gave up on (cancelled, or past its deadline) stops reading for it, and a
stream holds its slot until its handler has really ended: otherwise a few cancelled scans that
match nothing kept every db-api thread reading the whole collection while new ones were admitted,
and other clients' calls waited (a security audit's finding; 23 s for a `Get` in its probe).

Real server over gRPC on loopback, the real embedded store; the store only counts what it reads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pytest

from db_api.server import start_server
from db_api.store.base import ScanSpec
from db_api.store.sqlite import SqliteStore
from db_api.stream_slots import _Slot
from pipeline_lib.wire.proto import dbapi_pb2 as pb
from pipeline_lib.wire.proto import dbapi_pb2_grpc
from tests.processes import wait_for

DOCUMENTS = 100_000
NOTHING = [pb.Condition(field="notebook", op=pb.OPERATOR_EQ, value_json=json.dumps("no such notebook"))]


class WatchedStore(SqliteStore):
    """The embedded store, counting the pages each scan reads and the scans reading at once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._lock = threading.Lock()
        self.reading = 0
        self.most_at_once = 0
        self.pages: list[int] = []  # per scan, in the order they started

    def scan_pages(self, collection: str, spec: ScanSpec) -> Iterator[list[bytes]]:
        with self._lock:
            self.reading += 1
            self.most_at_once = max(self.most_at_once, self.reading)
            index = len(self.pages)
            self.pages.append(0)
        try:
            for page in super().scan_pages(collection, spec):
                self.pages[index] += 1
                yield page
        finally:
            with self._lock:
                self.reading -= 1


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[WatchedStore, dbapi_pb2_grpc.DbApiStub]]:
    store = WatchedStore(tmp_path_factory.mktemp("abandoned") / "store.sqlite3")
    for start in range(0, DOCUMENTS, 10_000):
        docs = [{"_id": f"run-{i}", "notebook": "clean"} for i in range(start, start + 10_000)]
        store.write("runs", docs, upsert=True)
    running = start_server(store, "127.0.0.1:0", max_workers=2, max_streams=2)  # closes the store
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield store, dbapi_pb2_grpc.DbApiStub(channel)
    finally:
        channel.close()
        running.stop(grace=None)


@pytest.fixture
def server(
    served: tuple[WatchedStore, dbapi_pb2_grpc.DbApiStub],
) -> tuple[WatchedStore, dbapi_pb2_grpc.DbApiStub]:
    store, _ = served
    wait_for(lambda: store.reading == 0, 120, "the last test's scans to end")
    store.most_at_once, store.pages = 0, []
    return served


def _scan_and_cancel(stub: dbapi_pb2_grpc.DbApiStub) -> grpc.StatusCode:
    call = stub.Scan(pb.ScanRequest(collection="runs", filter=NOTHING, batch_size=1))
    timer = threading.Timer(0.1, call.cancel)
    timer.start()
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        return exc.code()
    finally:
        timer.cancel()
    return grpc.StatusCode.OK


def test_cancelled_scans_stop_reading_and_hold_their_slots_until_they_end(
    server: tuple[WatchedStore, dbapi_pb2_grpc.DbApiStub],
) -> None:
    store, stub = server
    codes = [_scan_and_cancel(stub) for _ in range(6)]  # each a page at a time, matching nothing
    assert set(codes) <= {grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    found = stub.Get(pb.GetRequest(collection="runs", id="run-1"), timeout=60)
    assert found.found  # a unary call is served
    wait_for(lambda: store.reading == 0, 120, "the cancelled scans to end")
    # Never more scans reading than stream slots (before: all six, each while the last still read).
    assert store.most_at_once <= 2
    # Each stopped soon after its cancel (before: every one read all 100,000 pages).
    assert store.pages and all(pages < DOCUMENTS // 2 for pages in store.pages), store.pages


def test_a_list_past_its_deadline_stops_reading(
    server: tuple[WatchedStore, dbapi_pb2_grpc.DbApiStub],
) -> None:
    store, stub = server
    request = pb.ListDocumentsRequest(collection="runs", filter=NOTHING, limit=1)
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListDocuments(request, timeout=0.05)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: store.reading == 0, 120, "the list to end")
    # None if the deadline passed before the handler began (a busy machine); a whole read of the
    # collection is 100,000 pages of one (before) or 100 pages of 1,000.
    assert len(store.pages) <= 1 and sum(store.pages) < 100, store.pages


def test_a_count_past_its_deadline_stops_reading(
    server: tuple[WatchedStore, dbapi_pb2_grpc.DbApiStub],
) -> None:
    store, stub = server
    with pytest.raises(grpc.RpcError) as raised:
        stub.Count(pb.CountRequest(collection="runs", filter=NOTHING), timeout=0.05)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: store.reading == 0, 120, "the count to end")
    assert len(store.pages) <= 1 and sum(store.pages) < DOCUMENTS // 5000, store.pages


def test_a_list_of_one_reads_pages_of_many(
    server: tuple[WatchedStore, dbapi_pb2_grpc.DbApiStub],
) -> None:
    """`limit` 1 read the collection a document per SQL query: 100,000 queries to find nothing."""
    store, stub = server
    answer = stub.ListDocuments(
        pb.ListDocumentsRequest(collection="runs", filter=NOTHING, limit=1), timeout=120
    )
    assert list(answer.json) == []
    assert store.pages == [DOCUMENTS // 1000], store.pages


def test_a_scan_of_more_columns_than_the_limit_is_refused_before_reading(
    server: tuple[WatchedStore, dbapi_pb2_grpc.DbApiStub],
) -> None:
    """Each column named costs per document read: 100,000 of them (a 789 KB request) took 3.5 s
    for 60 documents in the audit's probe, and a scan of a large collection hours."""
    store, stub = server
    columns = [f"c{i}" for i in range(2000)]
    schema = pa.schema([(name, pa.string()) for name in columns]).serialize().to_pybytes()
    for request in (
        pb.ScanRequest(collection="runs", columns=columns),
        pb.ScanRequest(collection="runs", arrow_schema=schema),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.Scan(request, timeout=60))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "2000" in (raised.value.details() or "") and "at most 1024" in (raised.value.details() or "")
    assert store.pages == []


def test_a_slot_is_freed_once_when_its_handler_ends_not_when_its_call_does() -> None:
    """A bulk write's handler reads the client's stream until it returns: a cancel ending the call
    freed its slot mid-handler (review)."""
    slots = threading.BoundedSemaphore(1)
    assert slots.acquire(blocking=False)
    slot = _Slot(slots)
    slot.running()
    slot.call_ended()
    assert not slots.acquire(blocking=False)  # still the handler's
    slot.handler_ended()
    slot.handler_ended()  # once only: a second release would raise (bounded)
    assert slots.acquire(blocking=False)


def test_a_response_stream_never_started_is_freed_when_its_call_ends() -> None:
    slots = threading.BoundedSemaphore(1)
    assert slots.acquire(blocking=False)
    slot = _Slot(slots)
    stream = slot.held_while(iter([1, 2]))
    slot.call_ended()  # cancelled before gRPC pulled anything
    assert list(stream) == [] and slots.acquire(blocking=False)
