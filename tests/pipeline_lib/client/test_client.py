"""The clients: the asyncio variant, retries on UNAVAILABLE and deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
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


async def test_async_client_writes_a_stream_and_reads_it_back(sqlite_db_api: RunningServer) -> None:
    async def upload() -> AsyncIterator[pd.DataFrame]:
        for start in range(0, 3000, 1000):
            yield pd.DataFrame({"submission_id": [f"s{i}" for i in range(start, start + 1000)], "v": 1.0})

    async with AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as client:
        assert await client.health() == "SERVING"
        written = await client.write("cleaned", upload(), mode="upsert", key="submission_id", batch_size=700)
        assert (written.inserted, written.messages) == (3000, 6)
        frame = await client.scan_pandas("cleaned", partitions=2, partition=0)
        assert 0 < len(frame) < 3000
        inserted = await client.insert_one("raw", {"_id": "a", "ses": "1"})
        assert inserted.inserted and (await client.get("raw", "a")) == {"_id": "a", "ses": "1"}
        assert await client.count("cleaned", [("v", "eq", 1.0)]) == 3000
        assert await client.high_water_mark("cleaned") == 3000
        result = await client.commit_clean(pa.table({"submission_id": ["a"]}), None, ["a"])
        assert result.raw_deleted == 1
        assert await client.put_document("processed", "desc:overall", {"n": 3})
        assert (await client.get_document("processed", "desc:overall"))["n"] == 3
        assert len(await client.list_documents("processed")) == 1
        assert (await client.acquire_lease("clean", "me", 5)).acquired
        assert await client.release_lease("clean", "me")
        assert await client.delete_ids("cleaned", ["s1"]) == 1
        with pytest.raises(DbApiCallError) as error:
            await client.scan("nope")
        assert error.value.code == grpc.StatusCode.NOT_FOUND


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


async def test_async_write_reports_a_failing_source_as_itself(sqlite_db_api: RunningServer) -> None:
    async def broken() -> AsyncIterator[pa.Table]:
        yield pa.table({"_id": ["ok"]})
        raise ValueError("the upload was cut short")

    async with AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as client:
        with pytest.raises(ValueError, match="cut short"):
            await client.write("raw", broken())


def test_insert_one_assigns_the_id_itself_so_a_retry_cannot_insert_twice(sqlite_client: DbApiClient) -> None:
    document = {"sex": "F"}
    result = sqlite_client.insert_one("raw", document)
    assert result.inserted and len(result.id) == 24 and "_id" not in document
    assert sqlite_client.insert_one("raw", {"_id": result.id, "sex": "M"}).document["sex"] == "F"
