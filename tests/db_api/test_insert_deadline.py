"""An insert whose caller gave up is not stored afterwards.

The web app calls the db-api with a deadline (5 s) and answers 503 when it passes. A client
retrying a submission without an Idempotency-Key sends it under a new id, so an insert that still
committed after its caller left would be stored twice. Here the store's write lock is held by
another connection to the same file past the callers' deadlines; once it is let go, the late
inserts must not be committed.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire.requests import DbApiCallError
from tests.conftest import TOKEN
from tests.store_locks import held_write_lock


@pytest.mark.parametrize("call", ["insert_one", "insert_each"])
def test_an_insert_past_its_deadline_is_not_stored(
    call: str, sqlite_db_api: RunningServer, sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    late = {"_id": f"late-{call}", "ses": "1"}
    address = f"127.0.0.1:{sqlite_db_api.port}"
    with (
        held_write_lock(tmp_path / "store.sqlite3"),
        DbApiClient(address, TOKEN, timeout=1) as impatient,
        pytest.raises(DbApiCallError) as failed,
    ):
        getattr(impatient, call)("raw", late if call == "insert_one" else [late])
    assert failed.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # The db-api's writes are serialised: once this one is acknowledged, the late one is decided.
    assert sqlite_client.insert_one("raw", {"_id": "after", "ses": "2"}).inserted
    assert sqlite_client.get("raw", late["_id"]) is None
    assert sqlite_client.count("raw") == 1


def test_inserts_queued_behind_a_stuck_commit_leave_at_their_deadline_unstored(
    sqlite_db_api: RunningServer, sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    """Callers waiting their turn behind a commit that cannot finish are answered at their
    deadline (their db-api threads freed), and their documents are withdrawn, not stored later."""

    def impatient_insert(i: int) -> grpc.StatusCode | None:
        with DbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN, timeout=1) as impatient:
            try:
                impatient.insert_one("raw", {"_id": f"queued{i}"})
            except DbApiCallError as exc:
                return exc.code
        return None

    with held_write_lock(tmp_path / "store.sqlite3"), ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(impatient_insert, range(4)))
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 4
    assert sqlite_client.insert_one("raw", {"_id": "after"}).inserted
    assert sqlite_client.count("raw") == 1


def test_an_insert_within_its_deadline_waits_for_the_lock(
    sqlite_db_api: RunningServer, sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    """A short hold of the lock delays an insert; it does not fail it."""
    with held_write_lock(tmp_path / "store.sqlite3") as holder:
        release = threading.Timer(0.5, lambda: holder.execute("ROLLBACK"))
        release.start()
        assert sqlite_client.insert_one("raw", {"_id": "patient", "ses": "1"}).inserted
        release.join()
    assert sqlite_client.get("raw", "patient") == {"_id": "patient", "ses": "1"}
