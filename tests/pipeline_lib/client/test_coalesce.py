"""Concurrent single inserts share InsertEach calls: the logic with a scripted `send`, then the
async client against a real db-api."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence

import bson
import grpc
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.client.coalesce import InsertCoalescer
from pipeline_lib.wire.requests import DbApiCallError, InsertRefused, InsertResult
from tests.conftest import TOKEN


class ScriptedSend:
    """Answers each call when the test says so; records what each call carried."""

    def __init__(self) -> None:
        self.calls: list[list[dict]] = []
        self.release = asyncio.Event()
        self.fail_next: Exception | None = None

    async def __call__(
        self, collection: str, documents: Sequence[bytes]
    ) -> list[InsertResult | InsertRefused]:
        docs = [bson.decode(d) for d in documents]
        self.calls.append(docs)
        await self.release.wait()
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return [
            InsertRefused(grpc.StatusCode.INVALID_ARGUMENT, "refused")
            if d.get("bad")
            else InsertResult(d["_id"], True, d)
            for d in docs
        ]


def _refused(outcome: InsertRefused) -> Exception:
    return ValueError(outcome.message)


def _doc(i: int, **extra: object) -> bytes:
    return bson.encode({"_id": f"d{i}", **extra})


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_insert_goes_at_once_and_inserts_arriving_meanwhile_share_the_next_call() -> None:
    send = ScriptedSend()
    coalescer = InsertCoalescer(send, _refused, max_documents=40)
    first = asyncio.create_task(coalescer.insert("raw", _doc(0)))
    await _settle()
    assert [len(c) for c in send.calls] == [1]  # sent without waiting for company
    later = [asyncio.create_task(coalescer.insert("raw", _doc(i))) for i in range(1, 101)]
    await _settle()
    assert len(send.calls) == 1  # they wait for the call in flight
    send.release.set()
    results = await asyncio.gather(first, *later)
    assert [r.id for r in results] == [f"d{i}" for i in range(101)]
    assert [len(c) for c in send.calls] == [1, 40, 40, 20]


async def test_a_call_carries_at_most_max_bytes_but_always_one_document() -> None:
    send = ScriptedSend()
    send.release.set()
    coalescer = InsertCoalescer(send, _refused, max_bytes=1000)
    docs = [_doc(i, text="x" * 300) for i in range(7)] + [_doc(7, text="y" * 5000)]
    await asyncio.gather(*(coalescer.insert("raw", d) for d in docs))
    assert [len(c) for c in send.calls] == [3, 3, 1, 1]
    assert all(sum(len(bson.encode(d)) for d in call) <= 1000 for call in send.calls[:-1])


async def test_a_refused_document_fails_its_caller_alone() -> None:
    send = ScriptedSend()
    send.release.set()
    coalescer = InsertCoalescer(send, _refused)
    outcomes = await asyncio.gather(
        *(coalescer.insert("raw", _doc(i, bad=i == 3)) for i in range(6)), return_exceptions=True
    )
    assert [type(o).__name__ for o in outcomes] == ["InsertResult"] * 3 + ["ValueError"] + [
        "InsertResult"
    ] * 2


async def test_a_failed_call_fails_those_who_shared_it_and_the_next_call_goes_on() -> None:
    send = ScriptedSend()
    coalescer = InsertCoalescer(send, _refused)
    shared = [asyncio.create_task(coalescer.insert("raw", _doc(i))) for i in range(5)]
    await _settle()
    send.fail_next = ConnectionError("db-api gone")
    send.release.set()
    outcomes = await asyncio.gather(*shared, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)  # one call: all five shared it
    assert (await coalescer.insert("raw", _doc(9))).id == "d9"


async def test_a_caller_that_goes_away_cancels_neither_the_call_nor_the_others() -> None:
    send = ScriptedSend()
    coalescer = InsertCoalescer(send, _refused)
    tasks = [asyncio.create_task(coalescer.insert("raw", _doc(i))) for i in range(4)]
    await _settle()
    tasks[0].cancel()
    await _settle()
    send.release.set()
    assert [r.id for r in await asyncio.gather(*tasks[1:])] == ["d1", "d2", "d3"]
    assert tasks[0].cancelled()


async def test_collections_are_sent_apart() -> None:
    send = ScriptedSend()
    send.release.set()
    coalescer = InsertCoalescer(send, _refused)
    await asyncio.gather(coalescer.insert("raw", _doc(1)), coalescer.insert("users", _doc(2)))
    assert sorted(len(c) for c in send.calls) == [1, 1]


async def test_the_async_client_shares_calls_among_concurrent_inserts_on_a_real_db_api(
    sqlite_db_api: RunningServer,
) -> None:
    async with AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as client:
        calls: list[int] = []
        send = client._insert_each

        async def counted(collection: str, documents: Sequence[bytes]) -> list[InsertResult | InsertRefused]:
            calls.append(len(documents))
            return await send(collection, documents)

        client._inserts._send = counted
        docs = [{"_id": f"c{i}", "ses": str(i)} for i in range(200)]
        docs[17] = {"_id": "c17", "$bad": 1}  # refused by the db-api, alone
        docs[60] = {"_id": "c0", "ses": "again"}  # the same id as another: stored once
        outcomes = await asyncio.gather(*(client.insert_one("raw", d) for d in docs), return_exceptions=True)
        refused = outcomes[17]
        assert isinstance(refused, DbApiCallError) and refused.code == grpc.StatusCode.INVALID_ARGUMENT
        results = [o for o in outcomes if isinstance(o, InsertResult)]
        assert len(results) == 199 and sum(r.inserted for r in results) == 198
        assert await client.get("raw", "c0") == {"_id": "c0", "ses": "0"}
        assert await client.count("raw") == 198
        assert sum(calls) == 200 and len(calls) < 20, calls
        # What the db-api answers for each document is what InsertOne would have answered.
        assert outcomes[60] == InsertResult("c0", False, {"_id": "c0", "ses": "0"})


@pytest.mark.parametrize("documents", [0, 1])
async def test_insert_each_of_the_async_client(sqlite_db_api: RunningServer, documents: int) -> None:
    async with AsyncDbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as client:
        outcomes = await client.insert_each("raw", [{"ses": "1"}] * documents)
        assert len(outcomes) == documents and all(
            isinstance(o, InsertResult) and o.inserted for o in outcomes
        )


async def test_a_failure_nobody_waits_for_any_more_is_not_logged_as_unretrieved() -> None:
    send = ScriptedSend()
    coalescer = InsertCoalescer(send, _refused)
    reported: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
    gone = asyncio.create_task(coalescer.insert("raw", _doc(1)))
    await _settle()
    gone.cancel()
    await _settle()
    send.fail_next = ConnectionError("db-api gone")
    send.release.set()
    await _settle()
    del gone
    gc.collect()
    assert reported == []
