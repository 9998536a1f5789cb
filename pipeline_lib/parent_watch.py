"""For a process that must not outlive the one that started it: a thread that acts once its parent
is gone, even after `kill -9` of the parent, which no handler in the parent can see.

It polls the parent's id: a process whose parent dies is handed to another (init or a subreaper),
so the id changes. Linux's PR_SET_PDEATHSIG would need ctypes, and fires when the *thread* that
started the child ends, which a pool started from a request's thread does while its parent lives.

`process_start` names any process by its id and start time, for one that watches a process other
than its parent (the warm Spark's warm-up, started detached, watches the server); `running` finds
processes by their command line (the helpers started for a Spark: its warm-up, its daemons' zygote).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path


def on_parent_exit(
    parent: int, then: Callable[[], object], *, interval: float = 1.0, name: str = "parent-watch"
) -> threading.Thread:
    """Call `then` (in a daemon thread) within `interval` seconds of process `parent` ending, or at
    once if this process's parent is already another. `parent` is the id read when this process
    started (`os.getppid()` then), not now: the parent may be gone by the time this runs."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        then()

    thread = threading.Thread(target=watch, name=name, daemon=True)
    thread.start()
    return thread


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc's field 22), None if it is gone
    or has exited (a zombie): with the pid, it names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return None if fields[0] in ("Z", "X") else int(fields[19])


def parent(pid: int) -> int | None:
    """The id of process `pid`'s parent, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def command_line(pid: int) -> bytes:
    """Process `pid`'s arguments, each ended by NUL as /proc gives them; b"" if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def running(args: list[str]) -> list[int]:
    """The ids of the live processes whose command line holds `args`, one after another, after
    its first word (whatever program ran them)."""
    wanted = "\0".join([*args, ""]).encode()  # each argument ended by NUL, as /proc gives them
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if process_start(pid) is not None and b"\0" + wanted in command_line(pid)]
