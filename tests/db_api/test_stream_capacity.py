"""Streaming calls cannot take the db-api's capacity for unary calls.

Each stream holds a server thread for as long as it is open (a bulk write waits for its client's
next batch). However many streams clients open, at most `max_streams` are served at once (the
rest are refused with RESOURCE_EXHAUSTED and a clear message), and unary calls still answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pyarrow as pa

from db_api.server import RunningServer, start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from tests.conftest import TOKEN
from tests.db_streams import stalled_writes


def _eventually(write: Callable[[], object], wait: float = 10) -> None:
    """`write`, retried while the server still counts a stream that just ended (it frees the slot
    in its own thread, a moment after the client sees the end): what "try again shortly" asks."""
    deadline = time.monotonic() + wait
    while True:
        try:
            write()
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _refused(calls: list[grpc.Future], expected: int, wait: float = 10) -> list[grpc.Future]:
    deadline = time.monotonic() + wait
    while sum(call.done() for call in calls) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and no more than that
    return [call for call in calls if call.done()]


def test_unary_calls_answer_however_many_streams_are_open(
    sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    max_streams = 16  # the default
    with stalled_writes(sqlite_db_api.port, 40) as (calls, _):
        refused = _refused(calls, 40 - max_streams)
        with DbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN, timeout=2) as quick:
            assert quick.count("raw") == 0
            assert quick.insert_one("raw", {"_id": "r1", "ses": "1"}).inserted
            assert quick.health() == "SERVING"
        assert len(refused) == 40 - max_streams
        for call in refused:
            assert call.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"{max_streams} streaming calls" in call.exception().details()


def test_a_stream_slot_is_free_again_when_its_stream_ends(tmp_path: Path) -> None:
    running = start_server(SqliteStore(tmp_path / "s.sqlite3"), "127.0.0.1:0", token=TOKEN, max_streams=2)
    try:
        with DbApiClient(f"127.0.0.1:{running.port}", TOKEN, timeout=5) as client:
            with stalled_writes(running.port, 3) as (calls, release):
                refused = _refused(calls, 1)
                assert len(refused) == 1
                # Any of the three may be the one refused: the calls race to the server.
                first, second = [call for call in calls if call not in refused]
                first.cancel()  # one ends by cancellation, one by finishing
                release.set()
                assert second.result(timeout=10).messages == 0
                for _ in range(3):  # each write a stream of its own, one after the other
                    _eventually(
                        lambda: client.write("raw", pa.table({"_id": ["a"], "ses": ["1"]}), mode="upsert")
                    )
            assert client.scan("raw").num_rows == 1
    finally:
        running.stop(grace=0)
