"""LeaseKeeper against a real db-api: a lease that is lost stops the run, it is not only logged."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from db_api.server import RunningServer, start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.runs.lease import LeaseKeeper
from pipeline_lib.wire.requests import Fence, LeaseResult
from tests.conftest import TOKEN


class _Stops:
    """Records why the keeper asked the run to stop."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.called = threading.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.called.set()


def test_a_keeper_holds_its_generation_as_the_runs_fence(sqlite_client: DbApiClient) -> None:
    stops = _Stops()
    with LeaseKeeper(sqlite_client, "run:clean", "me", 0.6, on_lost=stops) as keeper:
        assert keeper.acquire()
        assert keeper.fence == Fence("run:clean", keeper.generation) and keeper.generation >= 1
        assert not stops.called.wait(1.5)  # renewed every ttl/3: never lost while it runs
        assert keeper.lost is None
    assert sqlite_client.acquire_lease("run:clean", "next", 5).acquired  # released at the end


def test_a_keeper_that_finds_its_lease_taken_stops_the_run(sqlite_client: DbApiClient) -> None:
    stops = _Stops()
    with LeaseKeeper(sqlite_client, "run:clean", "me", 0.6, on_lost=stops) as keeper:
        assert keeper.acquire()
        # What a long db-api outage does: the lease goes to another run meanwhile.
        assert sqlite_client.release_lease("run:clean", "me")
        taken = sqlite_client.acquire_lease("run:clean", "thief", 60)
        assert stops.called.wait(5)
    assert stops.reasons == [keeper.lost]
    assert keeper.lost == (
        f"lease run:clean is now held by thief (generation {taken.generation}); "
        f"this run's generation {keeper.generation} is stale"
    )
    assert sqlite_client.acquire_lease("run:clean", "other", 5).holder == "thief"  # not released by us


def test_a_keeper_that_cannot_reach_the_db_api_for_its_ttl_stops_the_run(tmp_path: Path) -> None:
    running = start_server(SqliteStore(tmp_path / "s.sqlite3"), "127.0.0.1:0", token=TOKEN)
    stops = _Stops()
    with DbApiClient(f"127.0.0.1:{running.port}", TOKEN, timeout=2) as client:
        keeper = LeaseKeeper(client, "run:clean", "me", 1.0, on_lost=stops)
        assert keeper.acquire()
        running.stop(grace=0)
        try:
            assert stops.called.wait(15)
        finally:
            keeper.release()
    assert keeper.lost is not None
    assert keeper.lost.startswith("lease run:clean expired: the db-api did not answer for 1 s")


class _LateRenewals(DbApiClient):
    """A client whose second lease call (the first renewal) reaches the db-api `late` seconds late,
    as under a loaded machine: the real db-api sees the lease expired by then."""

    def __init__(self, address: str, token: str, *, late: float) -> None:
        super().__init__(address, token)
        self.late, self.calls = late, 0

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> LeaseResult:
        self.calls += 1
        if self.calls == 2:
            time.sleep(self.late)
        return super().acquire_lease(name, holder, ttl_seconds)


def test_a_late_renewal_nobody_raced_keeps_the_lease_and_the_run(sqlite_db_api: RunningServer) -> None:
    stops = _Stops()
    address = f"127.0.0.1:{sqlite_db_api.port}"
    with (
        _LateRenewals(address, TOKEN, late=1.5) as client,
        LeaseKeeper(client, "run:clean", "me", 0.6, on_lost=stops) as keeper,
    ):
        assert keeper.acquire()
        assert not stops.called.wait(3)  # the late renewal came and went: still ours
        assert keeper.lost is None and client.calls >= 3
        assert client.acquire_lease("run:clean", "other", 5).holder == "me"
        assert client.acquire_lease("run:clean", "me", 5).generation == keeper.generation


def test_a_lease_released_and_taken_anew_counts_as_lost(sqlite_db_api: RunningServer) -> None:
    stops = _Stops()
    with DbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as client:
        keeper = LeaseKeeper(client, "run:clean", "me", 0.6, on_lost=stops)
        assert keeper.acquire()
        first = keeper.generation
        # Released and taken back by the same holder: held anew, with a new generation.
        assert client.release_lease("run:clean", "me")
        assert client.acquire_lease("run:clean", "me", 60).generation > first
        try:
            assert stops.called.wait(5)
        finally:
            keeper.release()
    assert keeper.lost is not None and f"this run's generation {first} is stale" in keeper.lost
