"""While one notebook of `workbench run all` runs, the kernels of the next two start and import
what their notebooks import; each run then uses its kernel, with its own lease's fence. Real runs
of the CLI against a real db-api; a probe module in the notebooks' folder records where and when it
was imported."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import nbformat
import pytest

from pipeline_lib.runs.kernel_ahead import environment_code, module_imports, warm_up_code
from tests.pipeline_lib.runs.conftest import RunEnv
from tests.pipeline_lib.runs.notebooks import _write
from tests.processes import python_output, running

PROBE = (
    "import json, os, time\n"
    "from pathlib import Path\n"
    "found = {'pid': os.getpid(), 'at': time.time(), 'fence': os.environ.get('WORKBENCH_RUN_FENCE')}\n"
    "Path(__file__).with_name('imported.json').write_text(json.dumps(found))\n"
)
USES_PROBE = (
    "import os\n"
    "import ahead_probe  # noqa\n"
    "from pipeline_lib.client.sync import DbApiClient\n"
    "with DbApiClient.from_settings() as client:\n"
    "    client.put_document('processed', 'ahead', {'pid': os.getpid(), 'fence': str(client.fence)})\n"
)


def _probe(run_env: RunEnv, first: str) -> None:
    """clean runs `first`; process imports the probe and writes its kernel's pid and fence."""
    (run_env.notebooks / "ahead_probe.py").write_text(PROBE)
    _write(run_env.notebooks / "clean.ipynb", [first])
    _write(run_env.notebooks / "process.ipynb", [USES_PROBE])


def _runs(run_env: RunEnv) -> dict[str, dict]:
    return {r["notebook"]: r for r in run_env.runs()}


@pytest.mark.slow
def test_the_next_notebook_imports_while_the_one_before_runs(run_env: RunEnv) -> None:
    _probe(run_env, "import time\ntime.sleep(3)")
    done = run_env.workbench("run", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Could not destroy" not in done.stderr and "Traceback" not in done.stderr
    runs = _runs(run_env)
    assert runs["clean"]["status"] == runs["process"]["status"] == "succeeded"
    imported = json.loads((run_env.notebooks / "imported.json").read_text())
    started = runs["process"]["started_at"].replace(tzinfo=dt.UTC).timestamp()
    assert imported["at"] < started, "the probe was imported only when process began"
    assert imported["fence"] is None, "the kernel started ahead must not carry the clean's fence"
    written = run_env.client.get_document("processed", "ahead")
    assert written is not None and written["pid"] == imported["pid"], "process ran in another kernel"
    lease, _, generation = written["fence"].rpartition(":")
    assert lease == "run:process" and int(generation) >= 1  # its own lease's fence, set on taking it
    assert not running(imported["pid"]), "the kernel outlived its run"


@pytest.mark.slow
def test_the_notebook_two_ahead_imports_while_the_first_runs(run_env: RunEnv) -> None:
    analyses = run_env.notebooks / "analyses"
    analyses.mkdir()
    (analyses / "ahead_probe.py").write_text(PROBE)
    waits_for_the_probe = (
        "import time\nfrom pathlib import Path\n"
        "waited = time.monotonic() + 60\n"
        "while not Path('analyses/imported.json').exists() and time.monotonic() < waited:\n"
        "    time.sleep(0.05)\n"
        "Path('seen_by_clean').write_text(str(Path('analyses/imported.json').exists()))\n"
    )
    _write(run_env.notebooks / "clean.ipynb", [waits_for_the_probe])
    _write(run_env.notebooks / "process.ipynb", ["done = True"])
    _write(analyses / "third.ipynb", [USES_PROBE])
    done = run_env.workbench("run", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run_env.notebooks / "seen_by_clean").read_text() == "True", "imported only after clean"
    imported = json.loads((analyses / "imported.json").read_text())
    assert imported["fence"] is None
    written = run_env.client.get_document("processed", "ahead")
    assert written is not None and written["pid"] == imported["pid"], "third ran in another kernel"
    assert written["fence"].rpartition(":")[0] == "run:third"
    assert not running(imported["pid"]), "the kernel outlived its run"


@pytest.mark.slow
def test_a_kernel_started_for_a_notebook_that_does_not_run_is_shut_down(run_env: RunEnv) -> None:
    _probe(run_env, "import time\ntime.sleep(3)\nraise ValueError('bad data')")
    done = run_env.workbench("run", "all")
    assert done.returncode == 1
    runs = _runs(run_env)
    assert runs["clean"]["status"] == "failed" and "process" not in runs
    imported = json.loads((run_env.notebooks / "imported.json").read_text())
    assert not running(imported["pid"]), "the unused kernel was left running"
    assert run_env.client.get_document("processed", "ahead") is None


@pytest.mark.slow
def test_a_kernel_stopped_while_it_imports_ahead_prints_no_traceback(run_env: RunEnv) -> None:
    # The probe is still being imported ahead (for process) when clean fails: the unused kernel
    # is stopped mid-import. Asked to shut down, it later failed to send the import's reply on
    # its closed socket and printed that error's traceback into the command's output.
    slow_probe = (
        "import os, time\nfrom pathlib import Path\n"
        "Path(__file__).with_name('importing').write_text(str(os.getpid()))\ntime.sleep(1.5)\n"
    )
    (run_env.notebooks / "ahead_probe.py").write_text(slow_probe + PROBE)
    fails_once_importing = (
        "import time\nfrom pathlib import Path\n"
        "waited = time.monotonic() + 120\n"
        "while not Path('importing').exists() and time.monotonic() < waited:\n    time.sleep(0.02)\n"
        "raise ValueError('bad data')"
    )
    _write(run_env.notebooks / "clean.ipynb", [fails_once_importing])
    _write(run_env.notebooks / "process.ipynb", [USES_PROBE])
    done = run_env.workbench("run", "all")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "process" not in _runs(run_env)
    pid = int((run_env.notebooks / "importing").read_text())
    assert not running(pid), "the unused kernel was left running"


@pytest.mark.slow
def test_a_kernel_that_died_ahead_is_replaced_by_a_fresh_one(run_env: RunEnv) -> None:
    _probe(run_env, "import time\ntime.sleep(3)")
    dies_ahead = "import os\nif os.environ.get('WORKBENCH_RUN_FENCE') is None:\n    os._exit(3)\n"
    (run_env.notebooks / "ahead_probe.py").write_text(dies_ahead + PROBE)
    done = run_env.workbench("run", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _runs(run_env)["process"]["status"] == "succeeded"
    imported = json.loads((run_env.notebooks / "imported.json").read_text())
    assert imported["fence"].startswith("run:process:"), "imported only in the run's own kernel"
    assert "kernel started ahead for process.ipynb not used" in done.stderr
    assert not running(imported["pid"])


@pytest.mark.slow
def test_a_single_notebook_runs_in_the_kernel_the_command_started_first(run_env: RunEnv) -> None:
    # `workbench run NAME` starts NAME's kernel before it imports the rest of the runner, the lease
    # and the run record; the probe is imported there without a fence, the cells run with one.
    (run_env.notebooks / "ahead_probe.py").write_text(PROBE)
    _write(run_env.notebooks / "process.ipynb", [USES_PROBE])
    done = run_env.workbench("run", "process")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Could not destroy" not in done.stderr and "Traceback" not in done.stderr
    imported = json.loads((run_env.notebooks / "imported.json").read_text())
    assert imported["fence"] is None, "the probe was imported by the run's cells, not ahead"
    written = run_env.client.get_document("processed", "ahead")
    assert written is not None and written["pid"] == imported["pid"], "process ran in another kernel"
    assert written["fence"].startswith("run:process:")
    assert not running(imported["pid"]), "the kernel outlived the command"


@pytest.mark.slow
def test_a_refused_parameter_starts_no_kernel_and_a_skipped_run_leaves_none(run_env: RunEnv) -> None:
    (run_env.notebooks / "ahead_probe.py").write_text(PROBE)
    _write(run_env.notebooks / "process.ipynb", [USES_PROBE])
    refused = run_env.workbench("run", "process", "-p", "no_such_parameter", "1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert not (run_env.notebooks / "imported.json").exists(), "a kernel started for a refused run"
    held = run_env.client.acquire_lease("run:process", "someone-else", 60)
    assert held.acquired
    skipped = run_env.workbench("run", "process", "--no-wait")
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert _runs(run_env)["process"]["status"] == "skipped"
    # Its kernel was started, perhaps not yet up when the run was skipped: none is left in its folder.
    assert _processes_in(run_env.notebooks) == [], "the unused kernel outlived the command"


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is `folder` (a kernel runs in its notebook's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder.resolve():
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return found


def test_the_imports_are_the_top_level_ones_of_the_code_cells(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("import not_code"),
        nbformat.v4.new_code_cell("import json, os.path as p\nfrom pipeline_lib.settings import Settings"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport skipped_cell_with_magic"),
        nbformat.v4.new_code_cell("from . import relative\ndef f():\n    import inside\nimport json"),
    ]
    path = tmp_path / "n.ipynb"
    nbformat.write(notebook, path)
    # `from a import b`: b may be a module (pipeline_lib.dashboards.overview) or not; both are tried.
    expected = ["json", "os.path", "pipeline_lib.settings", "pipeline_lib.settings.Settings"]
    assert module_imports(path) == expected
    assert module_imports(tmp_path / "missing.ipynb") == []


def test_the_code_run_ahead_binds_nothing_freezes_the_heap_and_the_environment_becomes_the_runs() -> None:
    code = (
        "import gc, os, json\n"
        "os.environ.update(KEPT='1', CHANGED='old', GONE='x')\n"
        f"exec({warm_up_code(['json', 'no_such_module_anywhere'])!r}, ns := {{}})\n"
        "before = {'KEPT': '1', 'CHANGED': 'old', 'GONE': 'x'}\n"
        "after = {'KEPT': '1', 'CHANGED': 'new', 'WORKBENCH_RUN_FENCE': 'run:process:7'}\n"
        "exec(__import__('pipeline_lib.runs.kernel_ahead', fromlist=['x']).environment_code(before, after))\n"
        "print(json.dumps({'names': sorted(k for k in ns if k != '__builtins__'),\n"
        "    'env': {k: os.environ.get(k) for k in ('KEPT', 'CHANGED', 'GONE', 'WORKBENCH_RUN_FENCE')},\n"
        "    'frozen': gc.get_freeze_count()}))\n"
    )
    found = json.loads(python_output(code, timeout=60))
    assert found["names"] == []
    assert found["frozen"] > 1000  # the imports' objects, out of the run's full collections
    fence = "run:process:7"
    assert found["env"] == {"KEPT": "1", "CHANGED": "new", "GONE": None, "WORKBENCH_RUN_FENCE": fence}
    assert "GONE" in environment_code({"GONE": "x"}, {})


STOPPED_IN_A_NEW_PROCESS = """
import asyncio, gc, sys
from pathlib import Path
import nbformat
from jupyter_core.utils import ensure_event_loop
from pipeline_lib.runs import kernel_ahead

gc.disable()  # what is left in reference cycles stays for the count below
notebook = Path(sys.argv[1]) / "nb.ipynb"
nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import json")]), notebook)
for taken in (False, True):
    kernel = kernel_ahead.KernelAhead(notebook, {})
    if taken:
        kernel.take({})
    kernel.shut_down()
kernel_ahead.wait_for_shut_down()
mine = ensure_event_loop()  # this thread's, which its own calls use
open_loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()]
print(len([loop for loop in open_loops if loop is not mine]))
"""


def test_the_threads_that_stop_kernels_leave_no_event_loop_open(tmp_path: Path) -> None:
    # Left open, a stop thread's event loop sat in a reference cycle until the interpreter's exit,
    # whose finaliser sometimes ran after its self-pipe was gone and printed a traceback (CI).
    assert python_output(STOPPED_IN_A_NEW_PROCESS, str(tmp_path)).strip() == "0"


STOPPED_AT_ONCE = """
import sys, threading
from pathlib import Path
from pipeline_lib.runs.kernel_ahead import KernelAhead, wait_for_shut_down

failed = []
threading.excepthook = lambda args: failed.append(f"{args.thread.name}: {args.exc_value}")
for _ in range(6):
    KernelAhead(Path(sys.argv[1]), {}).shut_down()
    wait_for_shut_down()
print(failed)
"""


def test_a_kernel_shut_down_as_it_starts_leaves_no_thread_failing(tmp_path: Path) -> None:
    # A kernel started ahead for a run that is then skipped or refused is shut down at once. Its
    # client's heartbeat thread, stopped before it had begun its loop, then made sockets until the
    # context had no more ("Too many open files", 1 time in 2): the heartbeat is not needed there.
    _write(tmp_path / "any.ipynb", ["x = 1"])
    assert python_output(STOPPED_AT_ONCE, str(tmp_path / "any.ipynb")).strip() == "[]"
