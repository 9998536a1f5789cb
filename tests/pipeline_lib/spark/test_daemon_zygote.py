"""The daemon zygote, without a Spark: this test process plays the server, starting
`python -m pipeline_lib.spark.python_daemon` as Spark's JVM does (a pipe on its stdin and stdout,
the daemon's secret and the zygote's name in its environment) and speaking pyspark's daemon
protocol to it (the port on stdout, a worker per connection, the secret, stdin closed to stop).
`test_python_daemon.py` and `tests/e2e/test_warm_spark.py` see real Spark sessions use it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from pipeline_lib.spark import daemon_zygote
from tests.processes import wait_for

LAUNCHER = [sys.executable, "-m", "pipeline_lib.spark.python_daemon", "pyspark.worker"]
SECRET = "the launcher's"


class Zygote(subprocess.Popen[bytes]):
    name: str


def _start_zygote(server_pid: int) -> Zygote:
    name = daemon_zygote.new_name()
    # A secret of its own: a daemon answering with the launcher's has taken the launcher's environment.
    env = {**os.environ, daemon_zygote.ENV: name, "PYTHON_WORKER_FACTORY_SECRET": "the zygote's"}
    zygote = Zygote(daemon_zygote.command(server_pid), env=env, stderr=subprocess.PIPE)
    zygote.name = name
    assert zygote.stderr is not None
    line = zygote.stderr.readline().decode()  # once it listens, imports done
    assert "fork from process" in line, line
    return zygote


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    process = _start_zygote(os.getpid())  # this process is its server
    yield process
    process.kill()
    process.wait()


@contextmanager
def _launched(tmp_path: Path, name: str, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
    """The daemon's launcher, started as Spark starts it (with `settings` added to its
    environment), killed at the end whatever happened to it."""
    env = {k: v for k, v in os.environ.items() if k != daemon_zygote.ENV}
    env |= {"PYTHON_WORKER_FACTORY_SECRET": SECRET, "SPARK_REUSE_WORKER": "1", daemon_zygote.ENV: name}
    launcher = subprocess.Popen(
        LAUNCHER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path, env=env | settings
    )
    try:
        yield launcher
    finally:
        launcher.kill()
        launcher.wait()


def _port(launcher: subprocess.Popen[bytes]) -> int:
    """The daemon's port, as Spark reads it: an int on the launcher's stdout."""
    assert launcher.stdout is not None
    return _as_int(launcher.stdout.read(4))


def _as_int(data: bytes) -> int:
    assert len(data) == 4, f"the daemon sent {data!r}"
    return int(struct.unpack("!i", data)[0])


def _ask_for_a_worker(port: int) -> tuple[int, int, bytes]:
    """A worker from the daemon at `port`, authenticated with the launcher's secret: its pid, its
    parent's (read while it runs) and the daemon's answer to the secret."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        worker = _as_int(conn.recv(4))
        parent = psutil.Process(worker).ppid()
        conn.sendall(struct.pack("!i", len(SECRET)) + SECRET.encode())
        length = _as_int(conn.recv(4))
        answer = conn.recv(length)
    return worker, parent, answer


def _handed_over(zygote: Zygote, launcher: subprocess.Popen[bytes]) -> tuple[int, int]:
    """The daemon the zygote forked for `launcher`, and a worker of it that took the launcher's
    secret (not the zygote's: the daemon has the launcher's environment)."""
    port = _port(launcher)
    (daemon,) = psutil.Process(zygote.pid).children()
    worker, parent, answer = _ask_for_a_worker(port)
    assert answer == b"ok"
    assert parent == daemon.pid
    return daemon.pid, worker


def _ended(*pids: int) -> None:
    for pid in pids:
        wait_for(lambda: not psutil.pid_exists(pid), 10, f"process {pid} to end")  # noqa: B023 - called at once


def test_a_daemon_forks_from_the_zygote_with_the_launchers_streams_and_environment(
    zygote: Zygote, tmp_path: Path
) -> None:
    with _launched(tmp_path, zygote.name) as launcher:
        daemon, worker = _handed_over(zygote, launcher)
        assert os.readlink(f"/proc/{daemon}/cwd") == str(tmp_path)  # the launcher's folder
        assert launcher.poll() is None  # the process Spark knows runs while its daemon does
        assert launcher.stdin is not None
        launcher.stdin.close()  # Spark stops a daemon so: the daemon, its workers and the launcher end
        assert launcher.wait(timeout=30) == 0
        _ended(daemon, worker)


def test_spark_stopping_the_launcher_stops_the_daemon_it_handed_over_to(
    zygote: Zygote, tmp_path: Path
) -> None:
    with _launched(tmp_path, zygote.name) as launcher:
        daemon, worker = _handed_over(zygote, launcher)
        # Process.destroy(): what Spark does to a daemon it no longer needs. Its stdin stays open
        # here, so only the signal, passed on by the launcher, can stop the daemon.
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=30)
        _ended(daemon, worker)


# A daemon as pyspark's is after a SIGTERM that came while it forked a worker: its handler reset
# SIGTERM to the default and raised SystemExit inside logging's at-fork hook, which ignores
# exceptions (seen in CI: "Exception ignored in: <function _releaseLock>"), so it runs on.
_LOSES_ONE_STOP = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: signal.signal(signal.SIGTERM, signal.SIG_DFL))
print("ready", flush=True)
time.sleep(600)
"""
# The launcher's side of a hand-over, with that daemon: it holds its end of the connection as the
# daemon forked by the zygote does, and Spark's stops come once the launcher passes them on.
_LAUNCHER_OF_ONE = f"""
import os, signal, socket, subprocess, sys
from pipeline_lib.spark import daemon_zygote
ours, theirs = socket.socketpair()
daemon = subprocess.Popen([sys.executable, "-c", {_LOSES_ONE_STOP!r}], pass_fds=[theirs.fileno()],
                          stdout=subprocess.PIPE)
theirs.close()
assert daemon.stdout.readline() == b"ready\\n"
stops = {{signal.SIGTERM, signal.SIGINT}}
signal.pthread_sigmask(signal.SIG_BLOCK, stops)
print(daemon.pid, flush=True)
daemon_zygote._serve_as_launcher(ours, os.pidfd_open(daemon.pid), stops)
daemon.wait(timeout=10)
"""


def test_a_stop_the_daemon_lost_is_passed_on_again() -> None:
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER_OF_ONE], stdout=subprocess.PIPE)
    assert launcher.stdout is not None
    # The launcher's child until it reaps it: this id cannot be another process's meanwhile.
    daemon = os.pidfd_open(int(launcher.stdout.readline()))
    try:
        time.sleep(1.5)  # the launcher waits for its daemon, its first wake-up not far off
        sent = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0
        # Not told again at once: a daemon still in its SIGTERM handler would die before telling
        # its workers to stop.
        assert time.monotonic() - sent >= 2.0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(daemon, signal.SIGKILL)
        os.close(daemon)


def _runs_its_own_daemon(launcher: subprocess.Popen[bytes]) -> None:
    _, parent, answer = _ask_for_a_worker(_port(launcher))
    assert answer == b"ok"
    assert parent == launcher.pid


def test_without_a_zygote_the_launcher_runs_the_daemon_itself(tmp_path: Path) -> None:
    with _launched(tmp_path, daemon_zygote.new_name()) as launcher:
        _runs_its_own_daemon(launcher)


def test_a_launcher_of_other_start_up_settings_runs_the_daemon_itself(zygote: Zygote, tmp_path: Path) -> None:
    """Python reads PYTHONHASHSEED as it starts: a daemon forked from the zygote would hash
    strings with the zygote's seed, not the one Spark gave its workers."""
    with _launched(tmp_path, zygote.name, PYTHONHASHSEED="123") as launcher:
        _runs_its_own_daemon(launcher)
        assert psutil.Process(zygote.pid).children() == []


def test_a_launcher_hands_nothing_to_a_socket_that_is_not_a_zygotes(tmp_path: Path) -> None:
    """The socket's namespace has no permissions: whoever binds the name first gets the
    connections. The launcher checks it is a zygote's before it sends its streams and secrets."""
    name = daemon_zygote.new_name()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as impostor:
        impostor.bind("\0" + name)
        impostor.listen(1)
        impostor.settimeout(30)
        with _launched(tmp_path, name) as launcher:
            conn, _ = impostor.accept()
            with conn:
                conn.settimeout(30)
                data, fds, _flags, _address = socket.recv_fds(conn, 65536, 3)
            assert (data, fds) == (b"", [])  # closed at once: no streams, no environment
            _runs_its_own_daemon(launcher)


def test_the_zygote_serves_only_processes_its_server_started(zygote: Zygote) -> None:
    """This process is the zygote's server, not its own parent: it is turned away, and its
    streams and environment stay its own."""
    assert not daemon_zygote.hand_over(zygote.name, sys.path)
    assert psutil.Process(zygote.pid).children() == []
    assert zygote.poll() is None


def test_a_launcher_gone_mid_message_leaves_the_zygote_serving(zygote: Zygote, tmp_path: Path) -> None:
    """A launcher killed between connecting and sending (Spark's SIGTERM, the OOM killer) once
    left the zygote reading an ended connection forever, taking a core and serving no one."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import socket; socket.socket(socket.AF_UNIX).connect({chr(0) + zygote.name!r})",
        ]
    )
    assert child.wait(timeout=30) == 0  # connected, sent nothing, gone
    with _launched(tmp_path, zygote.name) as launcher:
        _port(launcher)
        assert len(psutil.Process(zygote.pid).children()) == 1  # the next launcher is served


def test_the_zygote_leaves_when_its_server_ends() -> None:
    server = subprocess.Popen(["sleep", "120"])
    zygote = _start_zygote(server.pid)
    try:
        assert daemon_zygote.zygote_pid(server.pid) == zygote.pid
        assert zygote.name.encode() not in Path(f"/proc/{zygote.pid}/cmdline").read_bytes()
        server.kill()
        server.wait()
        assert zygote.wait(timeout=10) == 0
    finally:
        server.kill()
        zygote.kill()
        zygote.wait()
