"""A real Voilà for the live dashboards' tests: `workbench dashboards` on loopback, no preheated
kernel, reading from the given db-api, in a process of its own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from pipeline_lib.settings import LIVE_DASHBOARDS_PATH
from tests.conftest import TOKEN
from tests.processes import wait_for


@contextlib.contextmanager
def running_voila(
    folder: Path, db_api_port: int, voila_port: int, web_port: int, idle_seconds: int | None = None
) -> Iterator[str]:
    """Voilà started and answering; yields its own address (its base path included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{db_api_port}",
        WORKBENCH_DB_API_TOKEN=TOKEN,
        WORKBENCH_DATA_DIR=str(folder / "var"),
        WORKBENCH_VOILA_PORT=str(voila_port),
        WORKBENCH_WEB_PORT=str(web_port),
    )
    if idle_seconds is not None:
        env["WORKBENCH_VOILA_IDLE_SECONDS"] = str(idle_seconds)
    log = folder / "voila.log"
    with log.open("wb") as sink:
        voila = subprocess.Popen(
            [sys.executable, "-m", "pipeline_lib.cli.dashboards", "--pool-size", "0"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{voila_port}{LIVE_DASHBOARDS_PATH}"
        wait_for(lambda: voila.poll() is not None or _up(url), 90, "Voilà")
        assert voila.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        voila.terminate()
        voila.wait(60)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
