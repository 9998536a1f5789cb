"""`workbench up`: start every service as a child process, report their URLs, stop them together.

Each service is its own process (a crash in one is visible, not hidden in a thread); Ctrl-C or
SIGTERM stops all of them; if one dies, the others are stopped and the exit code says so.

The terminal shows only what is meant for the user: a service's stdout (where services print
nothing but such lines, e.g. the scheduler's one line per failed run) and what `run` says. A
service's stderr (its structured log, server and Spark logs) is appended to
`<log_dir>/<service>.log`; when a service dies, `run` shows the end of that file.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.cli.addresses import check_port_free
from pipeline_lib.logs import open_log, tail


@dataclass
class Service:
    name: str
    args: list[str]
    host: str | None  # None: the service listens on no port (the scheduler)
    port: int | None
    url: str  # what "ready at" shows: its address, or for a service without one what it does
    ready: Callable[[], bool]
    process: subprocess.Popen | None = None
    log: Path | None = None  # where its stderr goes (None: inherited)
    log_start: int = 0  # the offset in `log` where this start's lines begin

    def ready_line(self) -> str:
        if self.port is None:
            return f"{self.name:9} ready: {self.url}"
        return f"{self.name:9} ready at {self.url}"


def run(
    services: list[Service],
    echo: Callable[[str], None],
    start_timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    *,
    log_dir: Path | None = None,
    when_ready: str = "",
    error: Callable[[str], None] | None = None,
) -> int:
    """Start the services in order, each once the previous is ready; block until a signal or a death.

    `env` is the children's environment (the resolved settings, so each sees the same paths).
    With `log_dir`, each service's stderr is appended to `<log_dir>/<name>.log` (else inherited).
    `when_ready` is echoed once all are ready (the URLs, the next step), before the closing
    "All services are up" line; problems go to `error` (default `echo`). Raises PortTaken
    before starting anything when a service's port is in use."""
    error = error or echo
    for service in services:
        if service.host is not None and service.port is not None:
            check_port_free(service.host, service.port, service.name)
    stopping = False
    failed: Service | None = None  # the service that ended on its own, reported

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        names = ", ".join(service.name for service in services)
        echo(f"Starting {names}; their logs go to {log_dir}/<name>.log")
    try:
        for service in services:
            _start(service, env, log_dir)
            deadline = time.monotonic() + start_timeout
            while not service.ready():
                if stopping:
                    return 0
                assert service.process is not None
                if service.process.poll() is not None:
                    failed = service
                    error(_failure(service, f"did not start (exit code {service.process.returncode})"))
                    return 1
                if time.monotonic() > deadline:
                    error(_failure(service, f"did not get ready within {start_timeout:.0f} s"))
                    return 1
                time.sleep(0.2)
            echo(service.ready_line())
        if when_ready:
            echo(when_ready)
        echo("All services are up. Press Ctrl-C to stop them.")
        while not stopping:
            for service in services:
                if service.process is not None and service.process.poll() is not None:
                    failed = service
                    error(_failure(service, f"stopped unexpectedly (exit code {service.process.returncode})"))
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop_all([s for s in services if s is not failed], echo)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start(service: Service, env: Mapping[str, str] | None, log_dir: Path | None) -> None:
    command = [sys.executable, "-m", "pipeline_lib.cli", *service.args]
    if log_dir is None:
        service.process = subprocess.Popen(command, env=env)
        return
    service.log = log_dir / f"{service.name}.log"
    stream, service.log_start = open_log(service.log, f"workbench up starts {service.name}")
    with stream:  # the child has its own copy of the descriptor
        service.process = subprocess.Popen(command, env=env, stderr=stream)


def _failure(service: Service, what: str) -> str:
    """The error line for a service that failed, and the end of its log."""
    if service.log is None:
        return f"error: {service.name} {what} (see its log above)"
    lines = tail(service.log, service.log_start)
    if not lines:
        return f"error: {service.name} {what}; its log {service.log} has nothing to say"
    shown = "\n".join(f"  | {line}" for line in lines)
    return f"error: {service.name} {what}. The end of its log, {service.log}:\n{shown}"


def _stop_all(services: list[Service], echo: Callable[[str], None]) -> None:
    """Stop every started service (last started first) and say so. Each is named, whether this
    stops it or it already ended: the terminal's Ctrl-C reaches the whole process group, so a
    service may end on its own SIGINT before it is asked to."""
    started = [(s, s.process) for s in reversed(services) if s.process is not None]
    for _, process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for _, process in started:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if started:
        echo("Stopped " + ", ".join(s.name for s, _ in started) + ".")
