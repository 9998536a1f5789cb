"""`supervisor.run` with real child processes: a service's stderr lands in its log file, its stdout
stays on the terminal, and a service that fails is reported with the end of its log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline_lib.cli.supervisor import Service, _stop_all, run
from tests.wire_servers import free_port


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    return {**env, "WORKBENCH_DATA_DIR": str(tmp_path / "var")}


def _run(services: list[Service], tmp_path: Path) -> tuple[int, list[str], list[str]]:
    said: list[str] = []
    errors: list[str] = []
    code = run(
        services,
        said.append,
        start_timeout=60,
        env=_env(tmp_path),
        log_dir=tmp_path / "logs",
        when_ready="NEXT STEPS",
        error=errors.append,
    )
    return code, said, errors


def test_a_service_that_cannot_start_is_reported_with_the_end_of_its_log(tmp_path: Path) -> None:
    broken = Service("db-api", ["db-api", "--port", "not-a-port"], None, None, "nowhere", lambda: False)
    code, said, errors = _run([broken], tmp_path)
    assert code == 1
    log = tmp_path / "logs" / "db-api.log"
    assert said[0] == f"Starting db-api; their logs go to {tmp_path / 'logs'}/<name>.log"
    (error,) = errors
    assert error.startswith(f"error: db-api did not start (exit code 2). The end of its log, {log}:")
    assert "Invalid value for '--port'" in error  # typer's message, read from the file
    assert "NEXT STEPS" not in said and not any("All services are up" in line for line in said)


def test_stderr_is_appended_to_the_log_and_a_death_is_reported_with_its_end(tmp_path: Path) -> None:
    # `ping` of a db-api that is not there: it "is ready" at once, says why on stderr, exits 1.
    address = f"127.0.0.1:{free_port()}"
    args = ["db-api", "ping", "--address", address, "--timeout", "1"]
    log = tmp_path / "logs" / "pinger.log"
    log.parent.mkdir()
    log.write_text("from an earlier start\n")
    code, said, errors = _run([Service("pinger", args, None, None, "pings", lambda: True)], tmp_path)
    assert code == 1
    up = "All services are up. Press Ctrl-C to stop them."
    assert said[1:4] == ["pinger    ready: pings", "NEXT STEPS", up]
    (error,) = errors
    head, *tail = error.split("\n")
    assert head == f"error: pinger stopped unexpectedly (exit code 1). The end of its log, {log}:"
    assert any(line.startswith("  | db-api not ready") for line in tail)
    assert "earlier start" not in error  # only this start's lines
    text = log.read_text()
    assert text.startswith("from an earlier start\n==== ") and "workbench up starts pinger" in text
    assert "db-api not ready" in text


def test_a_services_stdout_stays_on_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    helper = Service("helper", ["db-api", "--help"], None, None, "helps", lambda: True)
    code, _, errors = _run([helper], tmp_path)
    assert code == 1 and errors[0].startswith("error: helper stopped unexpectedly (exit code 0)")
    assert "Usage" in capfd.readouterr().out
    assert "Usage" not in (tmp_path / "logs" / "helper.log").read_text()


def test_the_signal_handlers_are_given_back(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    _run([Service("quick", ["db-api", "--help"], None, None, "helps", lambda: True)], tmp_path)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_ctrl_c_names_every_service_it_stopped_even_those_its_sigint_ended_first(tmp_path: Path) -> None:
    # The terminal's Ctrl-C reaches the whole process group: here the supervisor's SIGINT comes
    # first and each service's own at once after it, so some may be gone before they are asked.
    port = free_port()
    crontab = tmp_path / "crontab"
    crontab.write_text("0 0 1 1 * clean\n")  # never fires while the test runs
    env = {
        **_env(tmp_path),
        "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{port}",
        "WORKBENCH_SCHEDULE_FILE": str(crontab),
    }
    services = [
        Service("db-api", ["db-api"], "127.0.0.1", port, "grpc", lambda: _accepts(port)),
        Service("scheduler", ["scheduler"], None, None, "runs", lambda: True),
    ]
    said: list[str] = []

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for service in services:
            assert service.process is not None
            service.process.send_signal(signal.SIGINT)

    timers: list[threading.Timer] = []

    def echo(line: str) -> None:
        said.append(line)
        if line.startswith("All services are up"):
            timers.append(threading.Timer(1.0, ctrl_c))
            timers[-1].start()

    # A SIGINT that comes after `run` gave the handlers back (it ended early) must not end pytest.
    outer = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        code = run(services, echo, start_timeout=60, env=env, log_dir=tmp_path / "logs")
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
        signal.signal(signal.SIGINT, outer)
    assert code == 0
    assert said[-1] == "Stopped scheduler, db-api."
    assert all(service.process is not None and service.process.poll() is not None for service in services)


def test_a_service_that_already_ended_is_named_with_those_it_stopped(tmp_path: Path) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    services = [
        Service("first", [], None, None, "", lambda: True, process=running),
        Service("second", [], None, None, "", lambda: True, process=ended),
        Service("never started", [], None, None, "", lambda: True),
    ]
    said: list[str] = []
    _stop_all(services, said.append)
    assert said == ["Stopped second, first."]
    assert running.returncode == -signal.SIGTERM


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True
