"""Scans encoded in worker processes give exactly what in-process scans give, and recover."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pytest

from db_api.server import RunningServer, start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiCallError, DbApiClient
from tests.conftest import TOKEN
from tests.processes import children, python_output, running, start_workbench, wait_for, wait_for_line
from tests.wire_servers import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def pooled(tmp_path: Path) -> Iterator[tuple[DbApiClient, DbApiClient]]:
    """Two servers on the same store file: one with 2 scan workers, one without."""
    path = tmp_path / "store.sqlite3"
    servers: list[RunningServer] = [
        start_server(SqliteStore(path), "127.0.0.1:0", token=TOKEN, scan_workers=workers)
        for workers in (2, 0)
    ]
    clients = [DbApiClient(f"127.0.0.1:{s.port}", TOKEN) for s in servers]
    yield clients[0], clients[1]
    for client in clients:
        client.close()
    for server in servers:
        server.stop(grace=1)


def test_pooled_scans_equal_in_process_scans(pooled: tuple[DbApiClient, DbApiClient]) -> None:
    pooled_client, local_client = pooled
    rows = [{"_id": f"r{i:05d}", "ses": str(i % 7), "n": i} for i in range(12_345)]
    rows[5]["nested"] = {"a": [1, 2]}
    pooled_client.write("raw", pa.Table.from_pylist(rows[:5] + rows[6:]))
    pooled_client.insert_one("raw", rows[5])
    for options in [
        {},
        {"batch_size": 1000},
        {"filter": [("n", "gte", 100)], "limit": 2500, "batch_size": 700},
        {"columns": ["n"], "partition": 1, "partitions": 3},
        {"column_types": "as_stored", "newest_first": True, "limit": 10},
    ]:
        assert pooled_client.scan("raw", **options).equals(local_client.scan("raw", **options)), options


def test_pooled_text_scans_of_raw_records_equal_in_process_scans(
    pooled: tuple[DbApiClient, DbApiClient],
) -> None:
    """The clean's read: text, a received_at datetime (written as ISO text), missing values; each
    page crosses to its worker as one bytes object."""
    pooled_client, local_client = pooled
    when = dt.datetime(2026, 5, 1, 8, 30, tzinfo=dt.UTC)
    rows = [
        {
            "_id": f"s{i:05d}",
            "received_at": when + dt.timedelta(milliseconds=37 * i),
            "ses": str(i % 7),
            "math_score": None if i % 5 == 0 else f"{i / 3:.2f}",
        }
        for i in range(12_345)
    ]
    pooled_client.write("raw", pa.Table.from_pylist(rows))
    text = pa.schema([(name, pa.string()) for name in rows[0]])
    for options in [{}, {"batch_size": 1000, "partition": 1, "partitions": 2}]:
        scanned = pooled_client.scan("raw", schema=text, **options)
        assert scanned.equals(local_client.scan("raw", schema=text, **options)), options
    first = pooled_client.scan("raw", schema=text, limit=2)
    assert first.column("received_at").to_pylist() == [
        "2026-05-01T08:30:00+00:00",
        "2026-05-01T08:30:00.037000+00:00",
    ]
    assert first.column("math_score").to_pylist() == [None, "0.33"]


def test_errors_inside_a_worker_reach_the_client(pooled: tuple[DbApiClient, DbApiClient]) -> None:
    pooled_client, _ = pooled
    pooled_client.write("cleaned", pa.table({"_id": ["a"], "s": ["text"]}))
    with pytest.raises(DbApiCallError) as error:
        pooled_client.scan("cleaned", schema=pa.schema([("_id", pa.string()), ("s", pa.int64())]))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_dead_worker_is_replaced_and_the_scan_retried(pooled: tuple[DbApiClient, DbApiClient]) -> None:
    pooled_client, _ = pooled
    pooled_client.write("raw", pa.table({"_id": [f"k{i}" for i in range(5000)]}))
    assert pooled_client.scan("raw").num_rows == 5000
    killed = {child.pid for child in multiprocessing.active_children()}
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # The db-api answers UNAVAILABLE for the scan that met the dead pool; the client retries it.
    assert pooled_client.scan("raw").num_rows == 5000
    replacements = {child.pid for child in multiprocessing.active_children()}
    assert replacements and not replacements & killed


WARMED_THEN_SCANNED = """
import datetime as dt, json, sys
from db_api import scan_pages
from pipeline_lib.wire import bson_codec

scan_pages._warm_up()
before = set(sys.modules)
when = dt.datetime(2026, 12, 3, 23, 0, tzinfo=dt.UTC)
raw = {"_id": "r1", "student_id": "S-1", "math_score": "71,5", "sex": "F", "received_at": when}
cleaned = {"_id": "c1", "math_score": 71.5, "ses": -0.2, "minority": False, "school_id": None,
           "changes": [{"field": "math_score", "from": "71,5"}], "cleaned_at": when}
blobs = [bson_codec.encode(doc) for doc in (raw, cleaned)]
for as_text in (False, True):
    scan_pages.encode_page(blobs, scan_pages.PageFormat(as_text=as_text))
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_a_worker_imports_at_start_up_what_its_first_scan_needs() -> None:
    # Before, pyarrow imported pandas (~360 modules, ~0.3 s) during the first scan in every worker.
    late = json.loads(python_output(WARMED_THEN_SCANNED))
    assert late == [], "imported during the first scan, not at start-up"


def test_ctrl_c_stops_the_db_api_and_its_scan_workers_without_tracebacks(tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches every process of its group, the scan workers too: the db-api
    stops them itself, so they must not each print a KeyboardInterrupt into its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env |= {"WORKBENCH_DB_API_TOKEN": TOKEN, "WORKBENCH_DATA_DIR": str(tmp_path / "var")}
    env["WORKBENCH_DB_API_SCAN_WORKERS"] = "2"
    port, log = free_port(), tmp_path / "db-api.log"
    server = start_workbench("db-api", env, log, ("--host", "127.0.0.1", "--port", str(port)))
    try:
        wait_for_line(server, log, "db-api listening")
        workers = lambda: children(server.pid, b"spawn_main")  # noqa: E731
        wait_for(lambda: len(workers()) == 2, 60, "two scan workers")
        started = workers()
        os.killpg(server.pid, signal.SIGINT)  # while the workers may still be starting: no matter
        assert server.wait(timeout=60) == 0
        wait_for(lambda: not any(running(pid) for pid in started), 30, "the scan workers to end")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    text = log.read_text()
    assert "db-api stopping" in text and "Traceback" not in text and "KeyboardInterrupt" not in text, text
