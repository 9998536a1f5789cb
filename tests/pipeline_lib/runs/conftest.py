"""A real db-api on loopback and `workbench run` as a real subprocess, with tiny notebooks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from tests.conftest import TOKEN
from tests.pipeline_lib.runs.notebooks import write_notebooks


@dataclass
class RunEnv:
    env: dict[str, str]
    data_dir: Path
    notebooks: Path
    client: DbApiClient

    def workbench(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline_lib.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline_lib.cli", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def runs(self) -> list[dict]:
        return self.client.list_documents("runs", limit=1000)


@pytest.fixture
def run_env(tmp_path: Path, sqlite_db_api: RunningServer) -> Iterator[RunEnv]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        WORKBENCH_DATA_DIR=str(tmp_path / "var"),
        WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{sqlite_db_api.port}",
        WORKBENCH_DB_API_TOKEN=TOKEN,
        WORKBENCH_NOTEBOOKS_DIR=str(write_notebooks(tmp_path / "notebooks")),
        WORKBENCH_RUN_LEASE_SECONDS="4",
    )
    with DbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN) as client:
        yield RunEnv(env, tmp_path / "var", tmp_path / "notebooks", client)
