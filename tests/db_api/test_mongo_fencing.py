"""Fencing inside MongoDB transactions (SecantusDB, which has them), with a transaction held open
the way a fenced commit holds it: its holder's renewals go through at once, and a new holder's
takeover and the old holder's commit never both land with the commit after.

Before the fence had a document of its own, the commit wrote the lease document itself; a run's
renewals then waited behind its own executors' commits, and on a busy run starved until the lease
expired (found by `tests/e2e/test_scaled_out.py`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from pymongo.errors import PyMongoError

from db_api.store.base import Fence
from db_api.store.mongo import MongoStore
from tests import wire_servers

pytestmark = [pytest.mark.mongo]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[wire_servers.WireServer]:
    wire = wire_servers.start_secantusdb(tmp_path_factory.mktemp("secantusdb"))
    yield wire
    wire.stop()


@pytest.fixture
def store(server: wire_servers.WireServer) -> Iterator[MongoStore]:
    opened = MongoStore(f"{server.uri.partition('?')[0].rstrip('/')}/f{uuid.uuid4().hex[:10]}")
    assert opened.transactions
    yield opened
    opened.close()


def _in_thread(target: object) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(target())  # type: ignore[operator]
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_holders_renewal_does_not_wait_for_its_own_open_commit(store: MongoStore) -> None:
    now = time.time()
    lease = store.acquire_lease("run:clean", "run-1", 60, now)
    fence = Fence("run:clean", lease.generation, now)
    with store.client.start_session() as session:
        session.start_transaction()
        store._check_fence(fence, session)  # what CommitClean does first in its transaction
        thread, outcome = _in_thread(lambda: store.acquire_lease("run:clean", "run-1", 60, time.time()))
        thread.join(timeout=30)  # the transaction stays open all this time
        assert not thread.is_alive(), "the renewal waited for the holder's open transaction"
        session.commit_transaction()
    (renewed,) = outcome
    assert renewed.acquired and renewed.generation == lease.generation


def test_a_takeover_and_an_open_commit_of_the_old_holder_never_both_land_in_that_order(
    store: MongoStore,
) -> None:
    now = time.time()
    lease = store.acquire_lease("run:clean", "old", 1, now)
    with store.client.start_session() as session:
        session.start_transaction()
        store._check_fence(Fence("run:clean", lease.generation, now), session)
        store.db["cleaned"].insert_one({"_id": "written-by-old"}, session=session)
        time.sleep(1.2)  # the old lease expires; the new holder takes it while the commit is open
        thread, outcome = _in_thread(lambda: store.acquire_lease("run:clean", "new", 60, time.time()))
        thread.join(timeout=3)
        taken_first = not thread.is_alive()
        try:
            session.commit_transaction()
            committed = True
        except PyMongoError:
            committed = False
    thread.join(timeout=120)
    (taken,) = outcome
    assert taken.acquired and taken.generation == lease.generation + 1
    assert not (taken_first and committed), "the old holder's write landed after the takeover"
    assert (store.db["cleaned"].find_one({"_id": "written-by-old"}) is not None) == committed
