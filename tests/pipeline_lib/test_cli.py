"""The `workbench` command line, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wire_servers import free_port

WORKBENCH = [sys.executable, "-m", "pipeline_lib.cli"]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return {**env, "WORKBENCH_DATA_DIR": str(data_dir)}


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*WORKBENCH, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [[], ["db-api"], ["db-api", "ping"]])
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = _run([*command, "--help"], _env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """`workbench db-api` on a free port, with a token it generates itself on first start."""
    port = free_port()
    env = _env(tmp_path)
    process = subprocess.Popen(
        [*WORKBENCH, "db-api", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    for _ in range(150):
        if _run(["db-api", "ping", "--address", f"127.0.0.1:{port}", "--timeout", "2"], env).returncode == 0:
            break
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.2)
    yield port, env
    process.terminate()
    assert process.wait(timeout=15) == 0


@pytest.mark.slow
def test_ping_reports_a_ready_service_using_the_generated_token(
    served: tuple[int, dict[str, str]], tmp_path: Path
) -> None:
    port, env = served
    token_file = tmp_path / "secrets" / "db_api_token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    result = _run(["db-api", "ping", "--address", f"127.0.0.1:{port}"], env)
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout and "store reachable" in result.stdout
    wrong = _run(["db-api", "ping", "--address", f"127.0.0.1:{port}"], {**env, "WORKBENCH_DB_API_TOKEN": "x"})
    assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr


@pytest.mark.slow
def test_a_taken_port_is_a_clear_error(served: tuple[int, dict[str, str]]) -> None:
    port, env = served
    result = _run(["db-api", "--port", str(port)], env)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_ping_of_a_service_that_is_down_fails_with_a_message(tmp_path: Path) -> None:
    result = _run(
        ["db-api", "ping", "--address", f"127.0.0.1:{free_port()}", "--timeout", "2"], _env(tmp_path)
    )
    assert result.returncode == 1
    assert "db-api not ready" in result.stderr
