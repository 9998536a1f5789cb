"""Both faces of the client against a real db-api: the calls, failures, retries and deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pyarrow as pa
import pytest

from db_api.server import RunningServer, start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.client.sync import DbApiCallError, DbApiClient
from tests.conftest import TOKEN
from tests.wire_servers import free_port


def _frames() -> Iterator[pd.DataFrame]:
    for start in range(0, 3000, 1000):
        yield pd.DataFrame({"submission_id": [f"s{i}" for i in range(start, start + 1000)], "v": 1.0})


def test_the_sync_client_makes_every_call(sqlite_client: DbApiClient) -> None:
    client = sqlite_client
    assert client.health() == "SERVING"
    written = client.write("cleaned", _frames(), mode="upsert", key="submission_id", batch_size=700)
    assert (written.inserted, written.messages) == (3000, 6)
    assert 0 < len(client.scan_pandas("cleaned", partitions=2, partition=0)) < 3000
    assert client.scan("cleaned", columns=["v"], limit=5).column_names == ["_id", "v"]
    assert client.count("cleaned", [("v", "eq", 1.0)]) == 3000
    assert client.high_water_mark("cleaned") == 3000
    assert client.insert_one("raw", {"_id": "a", "ses": "1"}).inserted
    assert client.get("raw", "a") == {"_id": "a", "ses": "1"}
    assert client.commit_clean(pa.table({"submission_id": ["a"]}), None, ["a"]).raw_deleted == 1
    assert client.put_document("processed", "desc:overall", {"n": 3})
    assert client.get_document("processed", "desc:overall") == {"_id": "desc:overall", "n": 3}
    assert len(client.list_documents("processed")) == 1
    assert client.acquire_lease("clean", "me", 5).acquired
    assert client.release_lease("clean", "me")
    assert client.delete_ids("cleaned", ["s1"]) == 1


async def test_the_async_client_makes_the_calls_the_web_app_makes(sqlite_db_api: RunningServer) -> None:
    async with AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as client:
        assert await client.health() == "SERVING"
        written = await client.write("cleaned", _frames(), mode="upsert", key="submission_id", batch_size=700)
        assert (written.inserted, written.messages) == (3000, 6)
        assert await client.count("cleaned", [("v", "eq", 1.0)]) == 3000
        inserted = await client.insert_one("raw", {"_id": "a", "ses": "1"})
        assert inserted.inserted and (await client.get("raw", "a")) == {"_id": "a", "ses": "1"}
        assert await client.get_document("users", "nobody") is None
        assert await client.list_documents("runs", limit=5) == []


async def test_both_faces_read_the_same_answers(
    sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    sqlite_client.insert_one("raw", {"_id": "r1", "ses": 0.5, "sex": "F"})
    for run in ("r1", "r2"):
        sqlite_client.put_document("runs", run, {"status": "ok", "n": 1})
    async with AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as aio:
        assert await aio.get("raw", "r1") == sqlite_client.get("raw", "r1")
        assert await aio.count("raw", {"sex": "F"}) == sqlite_client.count("raw", {"sex": "F"}) == 1
        assert await aio.get_document("runs", "r2") == sqlite_client.get_document("runs", "r2")
        newest = await aio.list_documents("runs", [("n", "eq", 1)], limit=1, newest_first=True)
        assert newest == sqlite_client.list_documents("runs", [("n", "eq", 1)], limit=1, newest_first=True)


def test_a_refused_call_raises_a_db_api_call_error_with_its_status(sqlite_client: DbApiClient) -> None:
    with pytest.raises(DbApiCallError) as error:
        sqlite_client.scan("nope")
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    assert str(error.value).startswith(f"db-api at {sqlite_client.address}: NOT_FOUND")


def test_documents_are_encoded_as_the_db_api_encodes_them(sqlite_client: DbApiClient) -> None:
    """Dates and decimals, which the db-api stores, are sent; what it would refuse (a whole number
    over 64 bits, a document over the size limit) is refused before sending, as it would be."""
    import datetime as dt
    from decimal import Decimal

    stored = sqlite_client.insert_one("raw", {"_id": "d", "on": dt.date(2026, 12, 4), "x": Decimal("1.5")})
    assert stored.document["on"] == dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    assert str(stored.document["x"]) == "1.5"
    for refused in ({"_id": "big", "n": 10**20}, {"_id": "huge", "text": "x" * (17 * 1024 * 1024)}):
        with pytest.raises(DbApiCallError) as error:
            sqlite_client.insert_one("raw", refused)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert repr(refused["_id"]) in error.value.details
    assert sqlite_client.count("raw") == 1


async def test_the_async_client_raises_the_same_error(sqlite_db_api: RunningServer) -> None:
    async with AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", "wrong") as client:
        with pytest.raises(DbApiCallError) as error:
            await client.count("raw")
    assert error.value.code == grpc.StatusCode.UNAUTHENTICATED


def _broken() -> Iterator[pa.Table]:
    yield pa.table({"_id": ["ok"]})
    raise ValueError("the upload was cut short")


def test_a_misspelt_scan_option_is_refused_not_ignored(sqlite_client: DbApiClient) -> None:
    with pytest.raises(TypeError, match=r"unknown scan option\(s\) \['colums'\]"):
        sqlite_client.scan("raw", colums=["ses"])  # type: ignore[call-arg]


def test_write_reports_a_failing_source_as_itself(sqlite_client: DbApiClient) -> None:
    with pytest.raises(ValueError, match="cut short"):
        sqlite_client.write("raw", _broken())


async def test_async_write_reports_a_failing_source_as_itself(sqlite_db_api: RunningServer) -> None:
    async with AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as client:
        with pytest.raises(ValueError, match="cut short"):
            await client.write("raw", _broken())


def test_an_unknown_write_mode_is_refused_before_any_call(sqlite_client: DbApiClient) -> None:
    with pytest.raises(ValueError, match="mode must be 'insert' or 'upsert'"):
        sqlite_client.write("raw", pa.table({"_id": ["a"]}), mode="replace")


def test_a_call_made_while_the_service_restarts_is_retried(tmp_path: Path) -> None:
    port = free_port()
    started: list[RunningServer] = []

    def start_late() -> None:
        time.sleep(1.0)
        started.append(start_server(SqliteStore(tmp_path / "s.sqlite3"), f"127.0.0.1:{port}", token=TOKEN))

    starter = threading.Thread(target=start_late)
    starter.start()
    try:
        with DbApiClient(f"127.0.0.1:{port}", TOKEN, timeout=20) as client:
            assert client.insert_one("raw", {"_id": "early"}).inserted
    finally:
        starter.join()
        for running in started:
            running.stop(grace=0)


def test_a_service_that_stays_down_fails_with_unavailable_not_a_hang(tmp_path: Path) -> None:
    with (
        DbApiClient(f"127.0.0.1:{free_port()}", TOKEN, timeout=5) as client,
        pytest.raises(DbApiCallError) as error,
    ):
        client.count("raw")
    assert error.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_insert_one_assigns_the_id_itself_so_a_retry_cannot_insert_twice(sqlite_client: DbApiClient) -> None:
    document = {"sex": "F"}
    result = sqlite_client.insert_one("raw", document)
    assert result.inserted and len(result.id) == 24 and "_id" not in document
    assert sqlite_client.insert_one("raw", {"_id": result.id, "sex": "M"}).document["sex"] == "F"
