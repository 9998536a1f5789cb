"""The snapshot cache's timing logic, with a stand-in for the db-api's one call (pure logic: the
pages it feeds are tested against a real db-api in test_dashboard_pages.py)."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from pipeline_lib.wire.requests import DbApiCallError
from web_app.snapshot_cache import SnapshotCache


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Documents:
    """`list_documents` answering with the current rendering, or held until released."""

    def __init__(self) -> None:
        self.html = "<p>first</p>"
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail = False

    async def list_documents(self, collection: str, limit: int) -> list[dict]:
        self.calls += 1
        html = self.html
        await self.release.wait()
        if self.fail:
            raise DbApiCallError("127.0.0.1:1", grpc.StatusCode.UNAVAILABLE, "down")
        return [{"_id": "overview", "title": "Overview", "html": html, "rendered_at": _stamp(html)}]


def _stamp(html: str) -> dt.datetime:
    return dt.datetime(2026, 12, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=len(html))


def _html(snapshots: dict) -> str:
    return str(snapshots["overview"].html)


async def _refreshed(cache: SnapshotCache) -> None:
    """Until the background read is over: it sanitises in a worker thread, which a loaded machine
    may take a while to schedule, so a fixed number of event-loop turns is not enough."""
    for _ in range(1000):
        if cache._refreshing is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background read did not finish in 10 s")


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_stale_snapshots_are_served_at_once_while_one_read_replaces_them(clock: Clock) -> None:
    db, cache = Documents(), SnapshotCache(ttl=5.0, clock=clock)
    assert "first" in _html(await cache.snapshots(db))  # type: ignore[arg-type]
    db.html, db.release = "<p>second one</p>", asyncio.Event()
    clock.now = 6.0  # expired; the read that replaces them is held
    served = []
    for _ in range(20):
        served.append(await cache.snapshots(db))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the background read starts, and waits
    assert all("first" in _html(s) for s in served) and db.calls == 2  # one read for all of them
    db.release.set()
    await _refreshed(cache)
    assert "second one" in _html(await cache.snapshots(db))  # type: ignore[arg-type]
    assert db.calls == 2  # fresh again: no read until the next expiry


async def test_the_first_requests_share_the_first_read_and_its_failure_is_raised(clock: Clock) -> None:
    db, cache = Documents(), SnapshotCache(ttl=5.0, clock=clock)
    db.fail = True
    with pytest.raises(DbApiCallError):
        await cache.snapshots(db)  # type: ignore[arg-type]
    db.fail, db.release = False, asyncio.Event()
    waiting = [asyncio.create_task(cache.snapshots(db)) for _ in range(5)]  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    db.release.set()
    assert all("first" in _html(s) for s in await asyncio.gather(*waiting))
    assert db.calls == 2  # the failed one, then one for the five


async def test_a_failed_refresh_keeps_the_last_snapshots_and_retries_after_a_second(clock: Clock) -> None:
    db, cache = Documents(), SnapshotCache(ttl=5.0, clock=clock)
    await cache.snapshots(db)  # type: ignore[arg-type]
    db.fail, clock.now = True, 6.0
    assert "first" in _html(await cache.snapshots(db))  # type: ignore[arg-type]
    await _refreshed(cache)  # the background read fails
    assert "first" in _html(await cache.snapshots(db))  # type: ignore[arg-type]
    assert db.calls == 2  # no retry within the second
    db.fail, db.html, clock.now = False, "<p>third one!</p>", 7.5
    await cache.snapshots(db)  # type: ignore[arg-type]
    await _refreshed(cache)
    assert "third one!" in _html(await cache.snapshots(db))  # type: ignore[arg-type]
