"""`on_parent_exit`: a helper process (a db-api scan worker, a class-archive build's session) acts
once the process that started it is gone, `kill -9` included."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline_lib.parent_watch import on_parent_exit, process_start

# A parent that starts a child and waits; the child watches it, and once it is gone writes its
# marker and exits. The parent prints the child's pid once the child watches.
PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "watching"
print(child.pid, flush=True)
child.wait()
"""
CHILD = """
import os, sys, time
from pathlib import Path
from pipeline_lib.parent_watch import on_parent_exit
marker = Path(sys.argv[1])
on_parent_exit(os.getppid(), lambda: (marker.write_text(str(os.getppid())), os._exit(0)), interval=0.1)
print("watching", flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of this process that ended but was not reaped yet still answers: not alive.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_child_acts_once_its_parent_is_killed_and_not_before(tmp_path: Path) -> None:
    marker = tmp_path / "parent-gone"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, str(marker)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        time.sleep(0.5)  # five of its intervals
        assert not marker.exists() and _alive(child)
        parent.kill()  # SIGKILL: nothing in the parent runs
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the child outlived its parent"
        assert marker.read_text() != str(parent.pid)  # it ran under its new parent
    finally:
        if _alive(child):
            os.kill(child, 9)


def test_a_parent_already_gone_calls_at_once() -> None:
    called = threading.Event()
    thread = on_parent_exit(os.getppid() + 1_000_000, called.set, interval=30)  # not this one's parent
    assert called.wait(5), "it waited an interval (30 s) before looking"
    thread.join(5)
    assert thread.daemon and not thread.is_alive()


def test_a_process_start_names_a_live_process_only() -> None:
    assert isinstance(process_start(os.getpid()), int)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":
        time.sleep(0.01)  # exited, not yet reaped: a zombie
    assert process_start(child.pid) is None
    child.wait()
    assert process_start(child.pid) is None
