"""An acknowledged write survives `kill -9` of the db-api process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline_lib.client.sync import DbApiClient
from tests.processes import children, running
from tests.wire_servers import free_port

pytestmark = pytest.mark.slow


def _start(data_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(data_dir), "WORKBENCH_DB_API_TOKEN": "durable"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline_lib.cli", "db-api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    with DbApiClient(f"127.0.0.1:{port}", "durable", timeout=2) as client:
        while True:
            try:
                if client.health() == "SERVING":
                    return process
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"db-api did not start: {process.stderr.read().decode()}") from None
                time.sleep(0.2)


def _wait_until_gone(pids: set[int]) -> None:
    """Scan workers notice their db-api died and exit; fail if any is still there after 30 s."""
    deadline = time.monotonic() + 30
    while (alive := {p for p in pids if running(p)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"scan workers outlived the killed db-api: {alive}"


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()
    process = _start(tmp_path, port)
    try:
        with DbApiClient(f"127.0.0.1:{port}", "durable") as client:
            client.insert_one("raw", {"_id": "one", "ses": "1,5"})
            client.write(
                "cleaned", pd.DataFrame({"_id": [f"c{i}" for i in range(20_000)], "v": range(20_000)})
            )
            client.commit_clean(pd.DataFrame({"submission_id": ["one"], "ses": [1.5]}), None, ["one"])
            client.put_document("runs", "r1", {"status": "succeeded"})
            client.scan("cleaned", limit=1)  # starts the scan worker processes
            workers = children(process.pid)
            # The last acknowledged write, immediately followed by the kill.
            client.insert_one("raw", {"_id": "last", "ses": "2"})
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert workers, "the db-api should run scan workers by default"
    _wait_until_gone(workers)
    process = _start(tmp_path, port)
    try:
        with DbApiClient(f"127.0.0.1:{port}", "durable") as client:
            assert client.get("raw", "last") == {"_id": "last", "ses": "2"}
            assert client.get("raw", "one") is None
            assert client.get("cleaned", "one") == {"_id": "one", "submission_id": "one", "ses": 1.5}
            assert client.count("cleaned") == 20_001
            assert client.get_document("runs", "r1") == {"_id": "r1", "status": "succeeded"}
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
