"""`workbench up`: start every service as a child process, report their URLs, stop them together.

Each service is its own process (a crash in one is visible, not hidden in a thread); Ctrl-C or
SIGTERM stops all of them; if one dies, the others are stopped and the exit code says so.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class Service:
    name: str
    args: list[str]
    host: str | None  # None: the service listens on no port (the scheduler)
    port: int | None
    url: str
    ready: Callable[[], bool]
    process: subprocess.Popen | None = None


class PortTaken(RuntimeError):
    pass


def check_port_free(host: str, port: int, name: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise PortTaken(
                f"{name} cannot start: {host}:{port} is already in use "
                "(another workbench running? stop it, or choose other ports in the settings)"
            ) from None


def run(
    services: list[Service],
    echo: Callable[[str], None],
    start_timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start the services in order, each once the previous is ready; block until a signal or a death.

    `env` is the children's environment (the resolved settings, so each sees the same paths)."""
    for service in services:
        if service.host is not None and service.port is not None:
            check_port_free(service.host, service.port, service.name)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for service in services:
            service.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline_lib.cli", *service.args], env=env
            )
            deadline = time.monotonic() + start_timeout
            while not service.ready():
                if stopping:
                    return 0
                if service.process.poll() is not None or time.monotonic() > deadline:
                    echo(f"error: {service.name} did not start (see its log above)")
                    return 1
                time.sleep(0.2)
            echo(f"{service.name:8} ready at {service.url}")
        echo("All services are up. Press Ctrl-C to stop them.")
        while not stopping:
            for service in services:
                if service.process is not None and service.process.poll() is not None:
                    echo(
                        f"error: {service.name} stopped unexpectedly (exit code {service.process.returncode})"
                    )
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop_all(services, echo)


def _stop_all(services: list[Service], echo: Callable[[str], None]) -> None:
    running = [s for s in reversed(services) if s.process is not None and s.process.poll() is None]
    for service in running:
        service.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    for service in running:
        try:
            service.process.wait(timeout=15)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            service.process.kill()  # type: ignore[union-attr]
    if running:
        echo("Stopped " + ", ".join(s.name for s in running) + ".")
