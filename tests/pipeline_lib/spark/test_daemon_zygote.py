"""The warm Spark's daemon zygote, without a Spark: this test process plays the server, starting
`python -m pipeline_lib.spark.python_daemon` as Spark's JVM does (a pipe on its stdin and stdout,
the daemon's secret and the zygote's name in its environment) and speaking pyspark's daemon
protocol to it (the port on stdout, a worker per connection, the secret, stdin closed to stop).
`tests/e2e/test_warm_spark.py` sees real Spark Connect sessions use it."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline_lib.spark import daemon_zygote
from tests.processes import wait_for

LAUNCHER = [sys.executable, "-m", "pipeline_lib.spark.python_daemon", "pyspark.worker"]


def _port(launcher: subprocess.Popen[bytes]) -> int:
    """The daemon's port, as Spark reads it: an int on the launcher's stdout."""
    assert launcher.stdout is not None
    return _as_int(launcher.stdout.read(4))


def _as_int(data: bytes) -> int:
    assert len(data) == 4, f"the daemon sent {data!r}"
    return int(struct.unpack("!i", data)[0])


def _start_zygote(server_pid: int) -> subprocess.Popen[bytes]:
    # A secret of its own: a daemon answering with the launcher's has taken the launcher's environment.
    env = {**os.environ, "PYTHON_WORKER_FACTORY_SECRET": "the zygote's"}
    zygote = subprocess.Popen(daemon_zygote.command(server_pid), env=env, stderr=subprocess.PIPE)
    assert zygote.stderr is not None
    line = zygote.stderr.readline().decode()  # once it listens
    assert "fork from process" in line, line
    return zygote


@pytest.fixture
def zygote() -> Iterator[subprocess.Popen[bytes]]:
    process = _start_zygote(os.getpid())  # this process is its server
    yield process
    process.kill()
    process.wait()


def _launch(tmp_path: Path, name: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != daemon_zygote.ENV}
    env |= {"PYTHON_WORKER_FACTORY_SECRET": "the launcher's", "SPARK_REUSE_WORKER": "1"}
    if name is not None:
        env[daemon_zygote.ENV] = name
    return subprocess.Popen(LAUNCHER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path, env=env)


def _ask_for_a_worker(port: int) -> tuple[int, bytes]:
    """A worker from the daemon at `port`, authenticated with the launcher's secret: its pid and
    the daemon's answer to the secret."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        worker = _as_int(conn.recv(4))
        secret = b"the launcher's"
        conn.sendall(struct.pack("!i", len(secret)) + secret)
        length = _as_int(conn.recv(4))
        answer = conn.recv(length)
    return worker, answer


def test_a_daemon_forks_from_the_zygote_with_the_launchers_streams_and_environment(
    zygote: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    launcher = _launch(tmp_path, daemon_zygote.socket_name(os.getpid()))
    try:
        port = _port(launcher)
        daemons = psutil.Process(zygote.pid).children()
        assert len(daemons) == 1, daemons
        daemon = daemons[0]
        assert os.readlink(f"/proc/{daemon.pid}/cwd") == str(tmp_path)  # the launcher's folder
        worker, answer = _ask_for_a_worker(port)
        assert answer == b"ok"  # the secret of the launcher's environment, not the zygote's
        assert psutil.Process(worker).ppid() == daemon.pid
        assert launcher.poll() is None  # the process Spark knows runs while its daemon does
        assert launcher.stdin is not None
        launcher.stdin.close()  # Spark stops a daemon so: the daemon, its workers and the launcher end
        assert launcher.wait(timeout=30) == 0
        wait_for(lambda: not psutil.pid_exists(daemon.pid), 10, "the daemon to end")
        wait_for(lambda: not psutil.pid_exists(worker), 10, "its worker to end")
    finally:
        launcher.kill()
        launcher.wait()


def test_spark_stopping_the_launcher_stops_the_daemon_it_handed_over_to(
    zygote: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    launcher = _launch(tmp_path, daemon_zygote.socket_name(os.getpid()))
    try:
        port = _port(launcher)
        (daemon,) = psutil.Process(zygote.pid).children()
        worker, answer = _ask_for_a_worker(port)
        assert answer == b"ok"
        launcher.send_signal(signal.SIGTERM)  # Process.destroy(): what Spark does to an idle daemon
        launcher.wait(timeout=30)
        wait_for(lambda: not psutil.pid_exists(daemon.pid), 10, "the daemon to end")
        wait_for(lambda: not psutil.pid_exists(worker), 10, "its worker to end")
    finally:
        launcher.kill()
        launcher.wait()


def test_without_a_zygote_the_launcher_runs_the_daemon_itself(tmp_path: Path) -> None:
    launcher = _launch(tmp_path, "no-such-zygote")
    try:
        port = _port(launcher)
        worker, answer = _ask_for_a_worker(port)
        assert answer == b"ok"
        assert psutil.Process(worker).ppid() == launcher.pid
    finally:
        launcher.kill()
        launcher.wait()


def test_the_zygote_serves_only_processes_its_server_started(zygote: subprocess.Popen[bytes]) -> None:
    """This process is the zygote's server, not its own parent: it is turned away, and its
    streams and environment stay its own."""
    assert not daemon_zygote.hand_over(daemon_zygote.socket_name(os.getpid()), sys.path)
    assert psutil.Process(zygote.pid).children() == []
    assert zygote.poll() is None


def test_the_zygote_leaves_when_its_server_ends() -> None:
    server = subprocess.Popen(["sleep", "120"])
    zygote = _start_zygote(server.pid)
    try:
        assert daemon_zygote.zygote_pid(server.pid) == zygote.pid
        server.kill()
        server.wait()
        assert zygote.wait(timeout=10) == 0
    finally:
        server.kill()
        zygote.kill()
        zygote.wait()
