"""Fencing over gRPC, on every backend: a run that lost its lease cannot write any more.

A writer names the lease generation it holds (`Fence`); the db-api checks it atomically with
the write and refuses a stale one with FAILED_PRECONDITION. Writes without a fence stay allowed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pyarrow as pa
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiCallError, DbApiClient
from pipeline_lib.wire.requests import Fence
from tests.conftest import TOKEN

LEASE = "run:clean"
OLD, NEW = "host-a:101:clean-1", "host-b:202:clean-2"


@pytest.fixture
def fenced(running_db_api: RunningServer) -> Iterator:
    """Clients that attach a fence to their writes, as a run's notebook does."""
    opened: list[DbApiClient] = []

    def client_with(fence: Fence) -> DbApiClient:
        opened.append(DbApiClient(f"127.0.0.1:{running_db_api.port}", TOKEN, fence=fence))
        return opened[-1]

    yield client_with
    for client in opened:
        client.close()


def _lease_taken_over(client: DbApiClient) -> tuple[Fence, Fence]:
    """The first holder stops renewing, its short lease expires, a second holder acquires."""
    first = client.acquire_lease(LEASE, OLD, 0.5)
    assert first.acquired and first.generation >= 1
    time.sleep(0.8)
    second = client.acquire_lease(LEASE, NEW, 60)
    assert second.acquired and second.generation > first.generation
    return Fence(LEASE, first.generation), Fence(LEASE, second.generation)


def _stale_message(stale: Fence, current: Fence) -> str:
    return (
        f"lease {LEASE} is now held by {NEW} (generation {current.generation}); "
        f"this run's generation {stale.generation} is stale"
    )


def test_a_stale_holders_commit_clean_is_refused_and_changes_nothing(client: DbApiClient, fenced) -> None:
    client.write("raw", pa.table({"_id": ["r1", "r2"], "ses": ["1", "2"]}))
    stale, current = _lease_taken_over(client)
    with pytest.raises(DbApiCallError) as refused:
        fenced(stale).commit_clean(
            pa.table({"submission_id": ["r1"], "ses": [1.0]}),
            pa.table({"submission_id": ["r2"], "reasons": [["ses"]]}),
            ["r1", "r2"],
        )
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details == _stale_message(stale, current)
    assert client.count("raw") == 2
    assert (client.count("cleaned"), client.count("quarantine")) == (0, 0)
    # The run that holds the lease now commits as usual.
    done = fenced(current).commit_clean(pa.table({"submission_id": ["r1"], "ses": [1.0]}), None, ["r1"])
    assert (done.cleaned, done.raw_deleted) == (1, 1)


def test_a_stale_holders_put_document_is_refused_and_changes_nothing(client: DbApiClient, fenced) -> None:
    client.put_document("processed", "ols:math_score", {"run_id": "before"})
    stale, current = _lease_taken_over(client)
    for doc_id in ("ols:math_score", "mixedlm:null"):  # a replacement and a new document
        with pytest.raises(DbApiCallError) as refused:
            fenced(stale).put_document("processed", doc_id, {"run_id": "stale"})
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.value.details == _stale_message(stale, current)
    assert client.get_document("processed", "ols:math_score") == {"_id": "ols:math_score", "run_id": "before"}
    assert client.get_document("processed", "mixedlm:null") is None
    assert fenced(current).put_document("processed", "mixedlm:null", {"run_id": "current"})
    assert client.get_document("processed", "mixedlm:null")["run_id"] == "current"


def test_writes_without_a_fence_stay_allowed_while_a_run_holds_the_lease(client: DbApiClient) -> None:
    assert client.acquire_lease(LEASE, NEW, 60).acquired
    assert client.put_document("processed", "note", {"by": "an admin"})
    assert client.commit_clean(pa.table({"submission_id": ["x"]}), None, []).cleaned == 1


def test_a_fence_is_refused_once_its_lease_expired_or_was_released(client: DbApiClient, fenced) -> None:
    held = client.acquire_lease(LEASE, OLD, 0.5)
    time.sleep(0.8)  # expired, and nobody took it over
    with pytest.raises(DbApiCallError, match=f"lease {LEASE} expired .* this run no longer holds it") as exc:
        fenced(Fence(LEASE, held.generation)).put_document("processed", "k", {"v": 1})
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION
    again = client.acquire_lease(LEASE, OLD, 60)
    assert again.generation == held.generation  # renewed late, nobody having taken it meanwhile
    assert client.release_lease(LEASE, OLD)
    with pytest.raises(DbApiCallError, match=f"lease {LEASE} was released .* no longer holds it"):
        fenced(Fence(LEASE, again.generation)).put_document("processed", "k", {"v": 1})
    with pytest.raises(DbApiCallError, match="lease run:never is not held by anyone") as never:
        fenced(Fence("run:never", 1)).put_document("processed", "k", {"v": 1})
    assert never.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert client.get_document("processed", "k") is None


def test_a_fence_reads_and_prints_as_lease_and_generation() -> None:
    fence = Fence.parse("run:clean:7")
    assert fence == Fence("run:clean", 7) and str(fence) == "run:clean:7"
    for bad in ("run:clean", "run:clean:x", ":3", "run:clean:0"):
        with pytest.raises(ValueError, match="WORKBENCH_RUN_FENCE"):
            Fence.parse(bad)
