"""Looking at other processes from tests, through /proc (Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pipeline_lib.parent_watch import command_line


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children(pid: int, marker: bytes = b"") -> set[int]:
    """Processes whose parent is `pid` (and whose command line contains `marker`)."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(entry.name)
        if fields is not None and int(fields[1]) == pid and marker in command_line(int(entry.name)):
            found.add(int(entry.name))
    return found


def running(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has exited; only its record is left


def signal_another_thread(pid: int, signum: int) -> int:
    """Send `signum` to a thread of `pid` other than its main one that does not block it, the way the
    kernel may deliver a signal sent to the process (to any thread that takes it); the thread's id."""
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        if int(task.name) == pid:
            continue
        status = (task / "status").read_text()
        blocked = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
        if not blocked & (1 << (signum - 1)):
            # kill() on a thread's id delivers to that thread first when it takes the signal (Linux).
            os.kill(int(task.name), signum)
            return int(task.name)
    raise AssertionError(f"no thread of {pid} but its main one takes signal {signum}")


def python_output(code: str, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None) -> str:
    """What `code` prints, run by this Python in a new process with `args` as sys.argv[1:] (and
    `env` as its environment, else this one's); its stderr is the failure's message if it does not
    exit 0. A new process starts with nothing imported, cached or warmed up, which is what such
    tests look at."""
    command = [sys.executable, "-c", code, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def descendants(pid: int) -> set[int]:
    """Every process below `pid`: children, their children, and so on."""
    found, frontier = set(), {pid}
    while frontier:
        found |= (kids := set().union(*(children(p) for p in frontier)))
        frontier = kids
    return found


def start_workbench(
    command: str, env: dict[str, str], log: Path, args: Sequence[str] = ()
) -> subprocess.Popen:
    """`workbench COMMAND ARGS...` as its own process group, its output in `log`."""
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline_lib.cli", command, *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.25)


def wait_for_line(process: subprocess.Popen, log: Path, text: str, timeout: float = 240) -> None:
    """Until `log` holds `text` (a "ready" line); RuntimeError with the log's end if `process`
    exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} in {log}; it ends:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_gracefully(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def non_loopback_ipv4() -> list[str]:
    """This machine's IPv4 addresses other than loopback (SIOCGIFADDR per interface)."""
    import fcntl
    import socket
    import struct

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on this interface
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                found.append(address)
    return found


def refuses(address: str, port: int) -> bool:
    """True if nothing listens on `address:port` (the connection is refused)."""
    import socket

    try:
        socket.create_connection((address, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False
