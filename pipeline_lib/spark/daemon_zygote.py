"""Spark's Python daemons, forked ready-made: a process with the workers' imports done (the
zygote) forks the Python daemon a Spark needs, instead of Spark starting a fresh Python that
imports them again, and it does those imports while Spark's JVM starts or before it asks.

Spark launches `python -m pipeline_lib.spark.python_daemon` for its Python workers, and its first
Python task waits for that daemon's imports (Arrow, pandas, the data source: about 1 core-second
here). The warm Spark starts one daemon per Spark Connect session, since Spark keys its Python
workers by their environment, which holds each session's artifact id (`SPARK_JOB_ARTIFACT_UUID`).
With `ENV` set (in the JVM's environment) the launcher hands its standard streams, environment,
working folder and path to the zygote (`hand_over`), which forks a child that takes them over and
runs pyspark's daemon. The launcher stays as the process Spark knows: it passes Spark's SIGTERM
on to the daemon (again every 2-3 s until the daemon and its workers have ended: pyspark's daemon
can lose one) and ends when they have; the daemon ends, as ever, when Spark closes its standard
input.

The zygote serves one Spark: the process given as its server (the warm Spark's JVM, or the run
whose driver JVM it starts); it serves only launchers that are that process's children or
grandchildren, of this user, and leaves when that process ends. Its socket is in Linux's abstract
namespace, which has no permissions: each side checks the other's credentials (a launcher hands
its streams and environment only to a process of its user running this module), and the name is
random and kept out of command lines. The launcher's Python must be the zygote's, with the same
pyspark and the same start-up settings (`PYTHONHASHSEED` and the like, which Python reads only
as it starts); otherwise, or without a zygote, the launcher runs the daemon itself, as before.
`workbench spark-connect` and `get_spark` start it for a local master only: a cluster's executors
run their own daemons elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import IO, Any

from pipeline_lib.parent_watch import command_line, parent, process_start, running

MODULE = "pipeline_lib.spark.daemon_zygote"
# The zygote's socket name, in the JVM's environment and so in its daemon launchers' (and in the
# zygote's own, never on a command line, which every local user can read).
ENV = "WORKBENCH_SPARK_ZYGOTE"
_LENGTH = struct.Struct("!I")
_MAX_MESSAGE = 1 << 20  # an environment and a path: a few KB
_CHECK_EVERY = 0.5  # seconds between checks that the server still runs
_ANSWER_WITHIN = 10.0  # seconds a launcher waits for the zygote's answer before starting its own daemon
_PASS_STOP_AGAIN_AFTER = 2.0  # seconds a stopped daemon may take to end before it is told again
_GO = b"g"  # the launcher has its answer and leaves its streams to the daemon
# Variables Python reads only as it starts (PYTHONPATH aside, sys.path is set): a daemon forked
# from a zygote started with other values would not honour the launcher's.
_STARTUP_VARIABLE = re.compile(r"PYTHON[A-Z]+")
# What Spark gives its Python workers of those (pyspark's SparkContext sets the hash seed of
# executors to 0 unless set), given to the zygote so that it matches them.
WORKER_STARTUP = {"PYTHONUNBUFFERED": "YES", "PYTHONDONTWRITEBYTECODE": "1"}
_STARTED_BY: int | None = None  # the process that started a zygote for its driver JVM, if one did


def new_name() -> str:
    """A name for a zygote's socket: random, so no other process can guess and take it first."""
    import secrets

    return f"workbench-spark-zygote-{secrets.token_hex(16)}"


def startup_settings(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if _STARTUP_VARIABLE.fullmatch(k) and k != "PYTHONPATH"}


def _pyspark_origin(path: list[str]) -> str | None:
    """Where `import pyspark` finds the package on `path` (without importing it)."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("pyspark", path)
    return os.path.realpath(spec.origin) if spec is not None and spec.origin else None


# -- the launcher's side ---------------------------------------------------------------------------


def hand_over(name: str, path: list[str]) -> bool:
    """Have the zygote `name` run this process's daemon (see the module); once it does, wait for
    that daemon to end and return True. False, having changed nothing, if it cannot."""
    stops = {signal.SIGTERM, signal.SIGINT}
    # Held until it is known who handles them: the daemon (passed on) or this process (fallback).
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(_ANSWER_WITHIN)
    try:
        conn.connect("\0" + name)
        pid, uid, _gid = _peer(conn)
        if uid != os.getuid() or f"\0-m\0{MODULE}\0".encode() not in command_line(pid):
            raise ValueError("not a zygote of this user")  # never hand it the streams and secrets
        message = {
            "executable": sys.executable,
            "pyspark": _pyspark_origin(path),
            "environ": dict(os.environ),
            "cwd": os.getcwd(),
            "path": path,
            "argv": sys.argv,
        }
        data = json.dumps(message).encode()
        socket.send_fds(conn, [_LENGTH.pack(len(data))], [0, 1, 2])
        conn.sendall(data)
        answer = json.loads(_receive(conn))
        daemon = os.pidfd_open(int(answer["pid"]))  # the daemon, even once its id is reused
        conn.sendall(_GO)
    except (OSError, ValueError, KeyError, TypeError):
        conn.close()  # a daemon forked meanwhile sees no go, and ends without touching the streams
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        return False
    _serve_as_launcher(conn, daemon, stops)
    return True


def _serve_as_launcher(conn: socket.socket, daemon: int, stops: set[signal.Signals]) -> None:
    # Spark reads the daemon's port from the pipe on our stdout and writes to the one on our stdin:
    # the daemon has both now. Ours are let go, so Spark sees the pipes end when the daemon ends.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)

    passed_on: list[tuple[int, float]] = []  # the stop passed on last, and when, if one was

    def forward(signum: int, _frame: object) -> None:
        passed_on[:] = [(signum, time.monotonic())]
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(daemon, signum)

    for stop in stops:  # Spark stops a daemon it no longer needs with SIGTERM
        signal.signal(stop, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)  # one that came meanwhile is passed on now
    conn.settimeout(_PASS_STOP_AGAIN_AFTER / 2)
    while True:  # the daemon and its workers hold the other end: it closes when they have all ended
        try:
            if not conn.recv(4096):
                break
        except TimeoutError:
            # pyspark's daemon loses a SIGTERM that comes as it forks a worker: its handler raises
            # SystemExit inside logging's at-fork hook, which ignores it. The handler has reset
            # SIGTERM to the default by then, so the stop passed on again ends it. Not sooner:
            # a daemon still in its handler would die before it told its workers to stop.
            if passed_on and time.monotonic() - passed_on[0][1] >= _PASS_STOP_AGAIN_AFTER:
                forward(passed_on[0][0], None)
    conn.close()


def _receive(conn: socket.socket, data: bytes = b"") -> bytes:
    """One length-prefixed message from `conn` (`data`: what of it was received already)."""
    while len(data) < _LENGTH.size or len(data) < _LENGTH.size + _LENGTH.unpack_from(data)[0]:
        if len(data) >= _LENGTH.size and _LENGTH.unpack_from(data)[0] > _MAX_MESSAGE:
            raise ValueError("message too long")
        piece = conn.recv(65536)
        if not piece:
            raise ValueError("the message ended early")
        data += piece
    return data[_LENGTH.size :]


def _peer(conn: socket.socket) -> tuple[int, int, int]:
    """The process id, user and group of the process at the other end of `conn`."""
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid, gid


# -- the zygote's side ----------------------------------------------------------------------------


def serve(server_pid: int, name: str, preload: Callable[[], object]) -> None:
    """Fork daemons for launchers the server `server_pid` starts, until that process ends."""
    started = process_start(server_pid)
    if started is None:
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + name)
    except OSError as exc:
        print(f"No zygote for the Spark of process {server_pid}: {exc}", file=sys.stderr, flush=True)
        return
    listener.listen(16)  # launchers that come while it imports wait: that is sooner than their own imports
    listener.settimeout(_CHECK_EVERY)
    preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the daemons it forks are reaped for it
    print(f"Python daemons for the Spark of process {server_pid} fork from process {os.getpid()}",
          file=sys.stderr, flush=True)  # fmt: skip
    while process_start(server_pid) == started:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            _answer(conn, listener, server_pid)


def _answer(conn: socket.socket, listener: socket.socket, server_pid: int) -> None:
    conn.settimeout(_ANSWER_WITHIN)
    fds: list[int] = []
    try:
        pid, uid, _gid = _peer(conn)
        if uid != os.getuid() or server_pid not in (parent(pid), parent(parent(pid) or 0)):
            return  # not a daemon launcher of this Spark: closed unanswered
        data, fds, _flags, _address = socket.recv_fds(conn, _LENGTH.size, 3)
        if len(fds) != 3:
            return
        message = json.loads(_receive(conn, data))
        refused = _refusal(message)
        if refused:
            _send(conn, {"refused": refused})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            _become_daemon(message, fds, conn, listener)  # never returns
    except (OSError, ValueError):
        return
    finally:
        for fd in fds:
            os.close(fd)


def _refusal(message: dict[str, Any]) -> str | None:
    """Why a daemon forked from here would not be the one the launcher would start, if it would not."""
    import pyspark

    if message.get("executable") != sys.executable:
        return "another Python"
    if message.get("pyspark") != os.path.realpath(pyspark.__file__ or ""):
        return "another pyspark"
    environ = message.get("environ")
    if not isinstance(environ, dict) or startup_settings(environ) != startup_settings(os.environ):
        return "other start-up settings"
    return None


def _send(conn: socket.socket, answer: dict[str, object]) -> None:
    data = json.dumps(answer).encode()
    conn.sendall(_LENGTH.pack(len(data)) + data)


def _become_daemon(
    message: dict[str, Any], fds: list[int], conn: socket.socket, listener: socket.socket
) -> None:
    """In the forked child: take the launcher's environment, folder and path; answer the launcher
    (itself, so a zygote gone after the fork leaves no launcher waiting or starting a second
    daemon); once the launcher says go, take its streams and run pyspark's daemon as the launcher
    would have. It keeps the connection open (inherited by its workers), so the launcher ends once
    they all have."""
    code: object = 1
    try:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(message["environ"])
        os.chdir(str(message["cwd"]))
        sys.path[:] = list(message["path"])
        sys.argv[:] = list(message["argv"])
        _send(conn, {"pid": os.getpid()})
        if conn.recv(1) != _GO:  # the launcher gave up meanwhile: its streams are not ours
            os._exit(1)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        import runpy

        runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:  # pyspark's daemon ends with sys.exit
        code = exc.code
    except BaseException:  # say why on stderr: the launcher's (which Spark logs) once taken over
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def command(server_pid: int) -> list[str]:
    """The zygote of the Spark that process `server_pid` runs or starts (its socket's name in `ENV`)."""
    return [sys.executable, "-m", MODULE, "--server", str(server_pid)]


def zygotes() -> dict[int, int]:
    """The zygotes running on this machine, by the process id of the Spark each serves (the
    daemons they forked share their command line, not their parent)."""
    found = running(["-m", MODULE])
    serving = {}
    for pid in found:
        words = command_line(pid).split(b"\0")
        if parent(pid) not in found and b"--server" in words[:-1]:
            serving[int(words[words.index(b"--server") + 1])] = pid
    return serving


def zygote_pid(server_pid: int) -> int | None:
    """The process id of the zygote of the Spark process `server_pid` runs, while it runs."""
    return zygotes().get(server_pid)


def start(server_pid: int, environ: Mapping[str, str], stderr: int | IO[Any] = 2) -> None:
    """Start the zygote for the Spark that process `server_pid` runs or starts, on the socket
    named in `environ[ENV]`, in the background and in a session of its own (a Ctrl-C meant for
    the run or `workbench up` does not reach it; it leaves with its server). Its environment is
    the JVM's, `environ`, with the start-up settings Spark gives its workers, so that its imports
    and its Python's settings are the daemons'. `stderr`: where its line goes (default this
    process's stderr)."""
    from pipeline_lib.spark.class_archive import start_detached

    worker_settings = {**WORKER_STARTUP, "PYTHONHASHSEED": environ.get("PYTHONHASHSEED", "0")}
    start_detached(command(server_pid), env={**environ, **worker_settings}, output=stderr)


def for_this_driver(environ: MutableMapping[str, str], stderr: IO[Any]) -> None:
    """Have the driver JVM this process is about to start fork its Python daemons from a zygote:
    started now, its imports run while the JVM starts. Sets `ENV` in `environ`, which the JVM is
    to get."""
    global _STARTED_BY
    if os.getpid() == _STARTED_BY:  # its zygote runs already: this process started a JVM before
        return
    _STARTED_BY = os.getpid()  # a forked child starts its own (an inherited name is not its zygote)
    environ[ENV] = new_name()
    start(os.getpid(), environ, stderr)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Fork a Spark's Python daemons (see the module).")
    parser.add_argument("--server", type=int, required=True, help="the process id of the Spark it serves")
    args = parser.parse_args(argv)

    def preload() -> None:
        from pipeline_lib.spark.python_daemon import preload_imports

        preload_imports()
        import pyspark.daemon  # noqa: F401 - its module runs again in each daemon, its imports do not

    serve(args.server, os.environ[ENV], preload)


if __name__ == "__main__":
    main()
