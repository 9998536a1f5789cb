"""A run's kernel and command end without collecting their heap again and again: at exit the heap is
collected once and frozen, after the exit callbacks registered later and before the earlier ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline_lib.runs.kernel import ensure_kernel
from tests.pipeline_lib.runs.test_kernel import _run_cell

# Prints, from exit callbacks registered before and after `freeze_heap_at_exit`, what each sees.
ORDER = """\
import atexit, gc, json
from pipeline_lib.runs.quick_exit import freeze_heap_at_exit

def seen(when):
    print(json.dumps({"when": when, "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))

atexit.register(seen, "registered before")
freeze_heap_at_exit()
atexit.register(seen, "registered after")
garbage = []
garbage.append(garbage)  # a cycle still referenced: live when the heap is frozen
"""


def test_callbacks_registered_later_run_first_and_those_registered_before_see_a_frozen_heap() -> None:
    done = subprocess.run([sys.executable, "-c", ORDER], capture_output=True, text=True, check=True)
    after, before = (json.loads(line) for line in done.stdout.splitlines())
    assert after == {"when": "registered after", "frozen": 0, "enabled": True}
    assert before["when"] == "registered before" and before["frozen"] > 1000 and not before["enabled"]
    assert done.stderr == ""


# Objects a notebook left in its namespace, each writing a file when finalized: one freed by reference
# counting, one in a reference cycle.
MARKERS = """\
from pathlib import Path
class Marker:
    def __init__(self, name):
        self.path = Path({folder!r}) / name
    def __del__(self):
        self.path.write_text("finalized")
alone = Marker("alone")
in_a_cycle = Marker("in_a_cycle")
in_a_cycle.me = in_a_cycle
"""


def test_a_runs_kernel_ends_finalizing_what_reference_counting_frees_and_no_cycle(tmp_path: Path) -> None:
    """The extension every run's kernel loads freezes the heap at exit: without it the kernel's
    teardown also collected the cycle (and took 0.5 s longer with the process notebook's imports)."""
    ensure_kernel()
    _run_cell(tmp_path, MARKERS.format(folder=str(tmp_path)))  # returns once the kernel has exited
    assert (tmp_path / "alone").read_text() == "finalized"
    assert not (tmp_path / "in_a_cycle").exists()
