"""db-api replicas over one MongoDB (SecantusDB, with transactions): clients given several
addresses spread their calls over them, and a replica killed with SIGKILL costs a retry of what it
was serving, never a lost or doubled record.

The replicas that get killed are real `workbench db-api` processes; the one that counts calls is
in process, over a real MongoStore.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from db_api.server import start_server
from db_api.store.mongo import MongoStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire import requests as wire_requests
from pipeline_lib.wire.requests import DbApiCallError, channel_options
from tests import wire_servers
from tests.conftest import TOKEN
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw
from tests.processes import start_workbench, wait_for
from tests.wire_servers import free_port

pytestmark = [pytest.mark.mongo]


@pytest.fixture(scope="module")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The wire server's URI without a database: each test names its own."""
    wire = wire_servers.start_secantusdb(tmp_path_factory.mktemp("secantusdb"))
    yield wire.uri.partition("?")[0].rstrip("/")
    wire.stop()


class CountingStore(MongoStore):
    """A real MongoStore that counts the `count` calls it served."""

    served = 0

    def count(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.served += 1
        return super().count(*args, **kwargs)


def test_calls_are_spread_over_the_listed_replicas_and_see_one_database(mongo: str) -> None:
    stores = [CountingStore(f"{mongo}/spread") for _ in range(2)]
    servers = [start_server(store, "127.0.0.1:0", token=TOKEN) for store in stores]
    try:
        with DbApiClient(",".join(f"127.0.0.1:{s.port}" for s in servers), TOKEN) as client:
            client.put_document("schools", "01224", {"name": "one"})
            counts = [client.count("schools") for _ in range(20)]
    finally:
        for server in servers:
            server.stop(grace=0)
    assert counts == [1] * 20  # whichever replica answered, it read the write
    served = [store.served for store in stores]
    assert sum(served) == 20 and min(served) >= 5, served  # round_robin, not all on the first


@dataclass
class Replica:
    port: int
    process: subprocess.Popen

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def replicas(mongo: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[Replica]]:
    """Two `workbench db-api` processes over one fresh database of the wire server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        WORKBENCH_MONGO_URI=f"{mongo}/{request.node.name[:40]}",
        WORKBENCH_DB_API_TOKEN=TOKEN,
        WORKBENCH_DATA_DIR=str(tmp_path / "var"),
    )
    started = []
    for n in range(2):
        port = free_port()
        args = ("--host", "127.0.0.1", "--port", str(port))
        started.append(Replica(port, start_workbench("db-api", env, tmp_path / f"db-api-{n}.log", args)))
    try:
        for replica in started:
            with DbApiClient(f"127.0.0.1:{replica.port}", TOKEN, timeout=5) as probe:
                wait_for(lambda probe=probe: _answers(probe), 60, f"db-api replica on {replica.port}")
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.kill()


def _answers(client: DbApiClient) -> bool:
    try:
        client.health()
        return True
    except DbApiCallError:
        return False


def _address(replicas: list[Replica]) -> str:
    return ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)


def _flow_controlled(max_message_bytes: int) -> list[tuple[str, object]]:
    """The client's channel options with HTTP/2's window fixed at 64 KiB: gRPC otherwise grows it
    (BDP probing) until a whole partition fits, and a stream the replica had finished sending
    before it died would complete (CI of 785ac40), proving nothing about a stream cut off."""
    return [
        *channel_options(max_message_bytes),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 65536),
    ]


def test_a_replica_killed_mid_scan_costs_a_retry_of_its_partition_only(
    replicas: list[Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire_requests, "channel_options", _flow_controlled)
    with DbApiClient(_address(replicas), TOKEN) as client:
        raw = dirty_raw(6_000, seed=11)
        client.write("raw", raw, key="submission_id")
        ids = client.scan("raw", columns=["_id"]).column("_id").to_pylist()
        # Two partitions read at once, as two Spark tasks would: round_robin puts the two streams
        # on the two replicas. One replica dies after each stream has delivered its first batch;
        # whole records make each partition (about 1 MB) many windows long, so neither is done.
        streams = [client.scan_batches("raw", partition=p, partitions=2, batch_size=100) for p in (0, 1)]
        firsts = [next(stream) for stream in streams]
        replicas[0].kill()
        read: dict[int, list[str]] = {}
        failed = []
        for partition, (first, stream) in enumerate(zip(firsts, streams, strict=True)):
            try:
                read[partition] = [i for batch in (first, *stream) for i in batch.column("_id").to_pylist()]
            except DbApiCallError as exc:
                failed.append((partition, exc.code.name))
        assert [code for _, code in failed] == ["UNAVAILABLE"], failed  # exactly the dead one's stream
        # As Spark does with a failed task: its rows are dropped and the partition read again,
        # here by the replica left.
        for partition, _ in failed:
            again = client.scan("raw", columns=["_id"], partition=partition, partitions=2)
            read[partition] = again.column("_id").to_pylist()
        assert sorted(read[0] + read[1]) == sorted(ids) and len(set(read[0]) & set(read[1])) == 0
        assert [client.count("raw") for _ in range(6)] == [len(ids)] * 6  # every later call answered


def _commit_started(client: DbApiClient, before: int) -> bool:
    try:
        return client.count("raw") < before
    except DbApiCallError:
        return False


@pytest.mark.slow
def test_a_replica_killed_during_a_clean_loses_and_doubles_nothing(
    replicas: list[Replica], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.notebooks.test_clean_notebook import _assert_each_submission_once, _papermill

    address = _address(replicas)
    with DbApiClient(address, TOKEN) as client:
        client.write("schools", SCHOOLS, mode="upsert", key="school_id")
        raw = dirty_raw(8_000, seed=5)
        client.write("raw", raw, key="submission_id")
        before = client.count("raw")
        monkeypatch.setenv("WORKBENCH_DB_API_TOKEN", TOKEN)  # the notebook's kernel inherits it
        monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "var"))
        run = _papermill(client, tmp_path / "killed.ipynb", batch_size=250, engine="pandas")
        wait_for(lambda: run.poll() is not None or _commit_started(client, before), 300, "the first commit")
        committing = run.poll() is None
        replicas[0].kill()
        first = run.wait(timeout=600)
        reruns = 0
        if first != 0:  # its calls were on the dead replica: run it again, as cron would next time
            rerun = _papermill(client, tmp_path / "rerun.ipynb", batch_size=1000, engine="pandas")
            assert rerun.wait(timeout=600) == 0
            reruns = 1
        assert committing, "the replica died after the run had finished: nothing was proven"
        no_consent = set(raw.loc[raw["consent"] == "no", "submission_id"])
        _assert_each_submission_once(client, set(raw["submission_id"]), no_consent)
        print(f"first run exit {first}, reruns {reruns}")


def test_clients_of_a_list_keep_answering_while_replicas_come_and_go(replicas: list[Replica]) -> None:
    answered, errors = [], []
    stop = threading.Event()

    def call() -> None:
        with DbApiClient(_address(replicas), TOKEN) as client:
            while not stop.is_set():
                try:
                    answered.append(client.count("raw"))
                except DbApiCallError as exc:
                    errors.append(exc)
                time.sleep(0.01)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1)
    replicas[1].kill()
    time.sleep(2)
    stop.set()
    caller.join(timeout=30)
    assert answered and not errors, errors[:3]
