"""The warm Spark's Python daemons, forked ready-made: a process with the workers' imports done
(the zygote) forks the Python daemon each new Spark Connect session needs, instead of Spark
starting a fresh Python that imports them again.

Spark keys its Python workers by their environment, which holds each session's artifact id
(`SPARK_JOB_ARTIFACT_UUID`), so every session attached to the warm Spark starts a daemon of its
own, and its first Python task waits for that daemon's imports (Arrow, pandas, the data source:
about 1 core-second here, against 0.3 for a second read in the same session). Spark still
launches `python -m pipeline_lib.spark.python_daemon` per session; with `ENV` set (the warm
Spark's environment) that process hands its standard streams, environment, working folder and
path to the zygote (`hand_over`), which forks a child that takes them over and runs pyspark's
daemon. The launcher stays as the process Spark knows: it passes Spark's SIGTERM on to the daemon
and ends when the daemon (with its workers) has ended; the daemon ends, as ever, when Spark closes
its standard input.

Only a process that the server itself started, of this user, is served (the socket is in Linux's
abstract namespace, so the peer's credentials are checked); a launcher that cannot hand over
(no zygote, refused, another Python) runs the daemon itself, as without this. The zygote leaves
when the server's process ends. `workbench spark-connect` starts it for a local master only:
a cluster's executors run their own daemons elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable

MODULE = "pipeline_lib.spark.daemon_zygote"
ENV = (
    "WORKBENCH_SPARK_ZYGOTE"  # the zygote's socket name, in the server's (and so the launchers') environment
)
_LENGTH = struct.Struct("!I")
_MAX_MESSAGE = 1 << 20  # an environment and a path: a few KB
_CHECK_EVERY = 0.5  # seconds between checks that the server still runs
_ANSWER_WITHIN = 10.0  # seconds a launcher waits for the zygote's answer before starting its own daemon


def socket_name(server_pid: int) -> str:
    return f"workbench-spark-zygote-{os.getuid()}-{server_pid}"


# -- the launcher's side ---------------------------------------------------------------------------


def hand_over(name: str, path: list[str]) -> bool:
    """Have the zygote `name` run this process's daemon (see the module); once it does, wait for
    that daemon to end and return True. False, having changed nothing, if it cannot."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(_ANSWER_WITHIN)
    try:
        conn.connect("\0" + name)
        message = {
            "executable": sys.executable,
            "environ": dict(os.environ),
            "cwd": os.getcwd(),
            "path": path,
            "argv": sys.argv,
        }
        data = json.dumps(message).encode()
        socket.send_fds(conn, [_LENGTH.pack(len(data)) + data], [0, 1, 2])
        answer = json.loads(_receive(conn))
    except (OSError, ValueError):
        conn.close()
        return False
    if "pid" not in answer:
        conn.close()
        return False
    _serve_as_launcher(conn, int(answer["pid"]))
    return True


def _serve_as_launcher(conn: socket.socket, daemon: int) -> None:
    # Spark reads the daemon's port from the pipe on our stdout and writes to the one on our stdin:
    # the daemon has both now. Ours are let go, so Spark sees the pipes end when the daemon ends.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signum)

    signal.signal(signal.SIGTERM, forward)  # Spark stops a daemon it no longer needs so
    signal.signal(signal.SIGINT, forward)
    conn.settimeout(None)
    while True:  # the daemon and its workers hold the other end: it closes when they have all ended
        try:
            if not conn.recv(4096):
                break
        except InterruptedError:
            continue
    conn.close()


def _receive(conn: socket.socket) -> bytes:
    """One length-prefixed message from `conn`."""
    data = b""
    while len(data) < _LENGTH.size or len(data) < _LENGTH.size + _LENGTH.unpack_from(data)[0]:
        if len(data) >= _LENGTH.size and _LENGTH.unpack_from(data)[0] > _MAX_MESSAGE:
            raise ValueError("message too long")
        piece = conn.recv(65536)
        if not piece:
            raise ValueError("the message ended early")
        data += piece
    return data[_LENGTH.size :]


# -- the zygote's side ----------------------------------------------------------------------------


def serve(server_pid: int, preload: Callable[[], object]) -> None:
    """Fork daemons for launchers the server `server_pid` starts, until that process ends."""
    from pipeline_lib.parent_watch import process_start

    started = process_start(server_pid)
    if started is None:
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + socket_name(server_pid))
    listener.listen(16)
    listener.settimeout(_CHECK_EVERY)
    preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the daemons it forks are reaped for it
    print(f"Python daemons for the warm Spark (process {server_pid}) fork from process {os.getpid()}",
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
        pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid != os.getuid() or _parent(pid) != server_pid:
            return  # not a daemon launcher of this server: closed unanswered
        data, fds, _flags, _address = socket.recv_fds(conn, 65536, 3)
        while len(data) < _LENGTH.size:
            data += conn.recv(65536)
        (length,) = _LENGTH.unpack_from(data)
        if length > _MAX_MESSAGE or len(fds) != 3:
            return
        while len(data) < _LENGTH.size + length:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece
        message = json.loads(data[_LENGTH.size :])
        if message.get("executable") != sys.executable:
            _send(conn, {"refused": "another Python"})
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


def _send(conn: socket.socket, answer: dict[str, object]) -> None:
    data = json.dumps(answer).encode()
    conn.sendall(_LENGTH.pack(len(data)) + data)


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _become_daemon(
    message: dict[str, object], fds: list[int], conn: socket.socket, listener: socket.socket
) -> None:
    """In the forked child: take the launcher's streams, environment, folder and path, and run
    pyspark's daemon as the launcher would have. It answers the launcher itself (a zygote gone
    after the fork leaves no launcher starting a second daemon on the same streams) and keeps the
    connection open (inherited by its workers), so the launcher ends once they all have."""
    code: object = 1
    try:
        listener.close()
        _send(conn, {"pid": os.getpid()})
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        environ = message["environ"]
        assert isinstance(environ, dict)
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(str(message["cwd"]))
        sys.path[:] = list(message["path"])  # type: ignore[call-overload]
        sys.argv[:] = list(message["argv"])  # type: ignore[call-overload]
        import runpy

        runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:  # pyspark's daemon ends with sys.exit
        code = exc.code
    except BaseException:  # say why on the launcher's stderr, which Spark logs
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def command(server_pid: int) -> list[str]:
    """The zygote of the server that process `server_pid` runs."""
    return [sys.executable, "-m", MODULE, "--server", str(server_pid)]


def zygote_pid(server_pid: int) -> int | None:
    """The process id of that server's zygote while it runs (the daemons it forked share its
    command line, not its parent)."""
    from pipeline_lib.parent_watch import running

    found = running(command(server_pid)[1:])
    return next((pid for pid in found if _parent(pid) not in found), None)


def start(server_pid: int, environ: dict[str, str]) -> None:
    """Start the zygote of the server that process `server_pid` runs (or is about to exec), in the
    background and detached as the warm-up is (`warm_up.start`), with the server's environment,
    so its imports see what the daemons' would; its output goes to stderr."""
    import subprocess

    from pipeline_lib.spark.class_archive import DETACH

    subprocess.run(
        [*DETACH, *command(server_pid)],
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=2,
        start_new_session=True,
        close_fds=True,
        check=False,
    )


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Fork the warm Spark's Python daemons (see the module).")
    parser.add_argument("--server", type=int, required=True, help="the process id of the warm Spark")
    args = parser.parse_args(argv)

    def preload() -> None:
        from pipeline_lib.spark.python_daemon import preload_imports

        preload_imports()
        import pyspark.daemon  # noqa: F401 - its module runs again in each daemon, its imports do not

    serve(args.server, preload)


if __name__ == "__main__":
    main()
