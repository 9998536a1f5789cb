"""A whole system started with `workbench up` for a test module, and the commands a user runs on it."""

from __future__ import annotations

import os
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
from tests.wire_servers import free_port

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


def quiet_system_env(home: Path, **settings: str) -> tuple[dict[str, str], str]:
    """The environment of a `workbench up` on free ports with its data under `home` and a schedule
    that never fires while a test runs (its runs are the ones the test starts), every other
    setting its default but `settings` (`NAME=value` for `WORKBENCH_NAME`); and the web app's URL."""
    quiet = home / "crontab"
    quiet.write_text("0 0 1 1 * clean\n")
    # Nothing of the shell's settings, its venv or a Spark Connect server it names.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORKBENCH_", "VIRTUAL_ENV", "SPARK_CONNECT"))
    }
    web_port = free_port()
    env.update(
        WORKBENCH_DATA_DIR=str(home / "var"),
        WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{free_port()}",
        WORKBENCH_WEB_PORT=str(web_port),
        WORKBENCH_VOILA_PORT=str(free_port()),
        WORKBENCH_SCHEDULE_FILE=str(quiet),
    )
    env.update({f"WORKBENCH_{name.upper()}": value for name, value in settings.items()})
    return env, f"http://127.0.0.1:{web_port}"


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
