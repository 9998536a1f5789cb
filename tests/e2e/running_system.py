"""A whole system started with `workbench up` for a test module, and the commands a user runs on it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.client.sync import DbApiClient
from tests.processes import descendants, running, start_workbench, wait_for_line

WORKBENCH = [sys.executable, "-m", "pipeline_lib.cli"]


@dataclass
class System:
    env: dict[str, str]
    web: str
    data_dir: Path
    log: Path

    def workbench(
        self, *args: str, stdin: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*WORKBENCH, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=timeout
        )

    def client(self) -> DbApiClient:
        token = (self.data_dir / "secrets" / "db_api_token").read_text().strip()
        return DbApiClient(self.env["WORKBENCH_DB_API_ADDRESS"], token, timeout=60)


@contextmanager
def workbench_up(env: dict[str, str], log: Path, *, timeout: float = 240) -> Iterator[None]:
    """`workbench up` with `env` until the block ends; then SIGTERM must stop it cleanly, leaving no
    process behind."""
    up = start_workbench("up", env, log)
    try:
        wait_for_line(up, log, "All services are up", timeout=timeout)
        yield
    finally:
        family = descendants(up.pid)
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, log.read_text()[-3000:]
        time.sleep(1)
        assert [pid for pid in family if running(pid)] == [], "workbench up left processes behind"
