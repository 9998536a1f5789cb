"""The account cache's single read per user and expiry (pure logic: a db stand-in that counts the
reads and lets the test decide when they finish; the real db-api path is `test_sessions.py`)."""

from __future__ import annotations

import asyncio

import pytest

from web_app.accounts import AccountCache


class CountingDb:
    """`get_document` that counts calls and answers when `release` is set."""

    def __init__(self, user: dict | None) -> None:
        self.user, self.calls, self.fail = user, 0, False
        self.release = asyncio.Event()

    async def get_document(self, collection: str, doc_id: str) -> dict | None:
        assert collection == "users"
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("db-api unavailable")
        return self.user


async def _gets(cache: AccountCache, db: CountingDb, n: int) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(cache.get(db, "ana")) for _ in range(n)]  # type: ignore[arg-type]
    await asyncio.sleep(0)
    return tasks


async def test_requests_that_find_the_account_expired_share_one_read() -> None:
    cache, db = AccountCache(ttl=60), CountingDb({"scopes": ["results:read"]})
    tasks = await _gets(cache, db, 50)
    db.release.set()
    assert [await t for t in tasks] == [db.user] * 50
    assert db.calls == 1
    assert await cache.get(db, "ana") == db.user  # type: ignore[arg-type]
    assert db.calls == 1  # cached


async def test_once_expired_the_account_is_read_again() -> None:
    cache, db = AccountCache(ttl=0), CountingDb({"disabled": False})
    db.release.set()
    for _ in range(3):
        await cache.get(db, "ana")  # type: ignore[arg-type]
    assert db.calls == 3


async def test_a_request_that_goes_away_does_not_cancel_the_read_the_others_wait_for() -> None:
    cache, db = AccountCache(ttl=60), CountingDb({"disabled": False})
    first, *others = await _gets(cache, db, 3)
    first.cancel()
    await asyncio.sleep(0)
    db.release.set()
    assert [await t for t in others] == [db.user] * 2
    with pytest.raises(asyncio.CancelledError):
        await first
    assert db.calls == 1


async def test_a_failed_read_fails_every_request_sharing_it_and_the_next_one_reads_again() -> None:
    cache, db = AccountCache(ttl=60), CountingDb({"disabled": False})
    db.fail = True
    tasks = await _gets(cache, db, 3)
    db.release.set()
    for task in tasks:
        with pytest.raises(RuntimeError, match="unavailable"):
            await task
    db.fail = False
    assert await cache.get(db, "ana") == db.user  # type: ignore[arg-type]
    assert db.calls == 2
