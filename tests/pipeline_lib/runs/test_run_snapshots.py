"""`workbench run` renders the dashboard snapshots after its notebooks ran: stored and archived
beside the run; a SIGTERM while rendering stops it without leaving the kernel behind; the
setting turns it off."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from pipeline_lib.contract.collections import DASHBOARDS
from tests.pipeline_lib.runs.conftest import RunEnv
from tests.pipeline_lib.runs.notebooks import _write
from tests.processes import descendants, running


def _dashboard(folder: Path, name: str, *code: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell(f"# {name.title()}"),
        *map(nbformat.v4.new_code_cell, code),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / f"{name}.ipynb")


def _quick(run_env: RunEnv) -> None:
    _dashboard(
        run_env.notebooks / "dashboards",
        "quick",
        "from IPython.display import HTML, display\nimport os\n"
        "display(HTML(f\"<p>snapshot: {os.environ['WORKBENCH_DASHBOARD_SNAPSHOT']}</p>\"))",
    )


@pytest.mark.slow
def test_a_run_renders_the_snapshots_and_archives_them_beside_it(run_env: RunEnv) -> None:
    _quick(run_env)
    done = run_env.workbench("run", "ok")
    assert done.returncode == 0, done.stderr
    assert "dashboard snapshots: 1 rendered in" in done.stdout
    stored = run_env.client.get_document(DASHBOARDS, "quick")
    record = next(r for r in run_env.runs() if r["notebook"] == "ok")
    assert stored["title"] == "Quick" and stored["run_id"] == record["run_id"]
    assert "<p>snapshot: 1</p>" in stored["html"]  # drawn as a snapshot: no widgets
    archived = Path(record["output_path"]).with_name(f"{record['run_id']}-dashboards") / "quick.html"
    assert "<p>snapshot: 1</p>" in archived.read_text()


@pytest.mark.slow
def test_snapshots_can_be_turned_off(run_env: RunEnv) -> None:
    _quick(run_env)
    run_env.env["WORKBENCH_DASHBOARD_SNAPSHOTS"] = "false"
    done = run_env.workbench("run", "ok")
    assert done.returncode == 0 and "dashboard snapshots" not in done.stdout + done.stderr
    assert run_env.client.get_document(DASHBOARDS, "quick") is None


def _slow_dashboard(run_env: RunEnv, tmp_path: Path) -> Path:
    """A dashboard that touches a file (returned) as it starts rendering, then sleeps two minutes;
    its previous snapshot reads "before"."""
    started = tmp_path / "rendering"
    _dashboard(
        run_env.notebooks / "dashboards",
        "slow",
        f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(120)",
    )
    run_env.client.put_document(DASHBOARDS, "slow", {"title": "Slow", "html": "<p>before</p>"})
    return started


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen, deadline: float) -> None:
    """Until `condition` holds, while the command still runs, at most until `deadline`."""
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_while_rendering_stops_it_and_leaves_no_kernel(run_env: RunEnv, tmp_path: Path) -> None:
    started = _slow_dashboard(run_env, tmp_path)
    process = run_env.start("run", "ok")
    deadline = time.monotonic() + 90
    _wait_until(started.exists, process, deadline)
    family = descendants(process.pid)
    assert family  # the rendering kernel
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err  # the run itself succeeded
    assert "dashboard snapshots: stopped; the previous ones stay" in err
    time.sleep(0.5)
    assert [pid for pid in family if running(pid)] == []
    assert run_env.client.get_document(DASHBOARDS, "slow")["html"] == "<p>before</p>"
    assert next(r for r in run_env.runs() if r["notebook"] == "ok")["status"] == "succeeded"


@pytest.mark.slow
def test_the_rendering_kernel_starts_and_imports_while_the_last_notebook_runs(run_env: RunEnv) -> None:
    folder = run_env.notebooks / "dashboards"
    folder.mkdir(parents=True)
    (folder / "snapshot_probe.py").write_text(
        "import json, os, time\nfrom pathlib import Path\n"
        "Path(__file__).with_name('imported.json').write_text(json.dumps([os.getpid(), time.time()]))\n"
    )
    _dashboard(
        folder,
        "probed",
        "import os\nimport snapshot_probe  # noqa\nfrom IPython.display import HTML, display\n"
        'display(HTML(f"<p>pid {os.getpid()}</p>"))',
    )
    _write(run_env.notebooks / "slow.ipynb", ["import time\ntime.sleep(3)"])
    done = run_env.workbench("run", "slow")
    assert done.returncode == 0, done.stderr
    assert "dashboard snapshots: 1 rendered in" in done.stdout
    pid, imported_at = json.loads((folder / "imported.json").read_text())
    record = next(r for r in run_env.runs() if r["notebook"] == "slow")
    assert imported_at < record["ended_at"].replace(tzinfo=dt.UTC).timestamp(), "imported after the run"
    assert f"<p>pid {pid}</p>" in run_env.client.get_document(DASHBOARDS, "probed")["html"]
    assert not running(pid), "the rendering kernel outlived the command"


@pytest.mark.slow
def test_the_rendering_kernel_is_killed_once_its_pages_are_rendered(run_env: RunEnv) -> None:
    """It only reads, so the command does not wait for its interpreter's teardown: an exit handler
    registered in it never runs (it would on a requested shutdown)."""
    folder = run_env.notebooks / "dashboards"
    exited = folder / "exited.txt"
    _dashboard(
        folder,
        "teardown",
        f"import atexit, os\natexit.register(lambda: open({str(exited)!r}, 'w').write('asked'))\n"
        "from IPython.display import HTML, display\n"
        'display(HTML(f"<p>pid {os.getpid()}</p>"))',
    )
    _write(run_env.notebooks / "quick.ipynb", ["x = 1"])
    done = run_env.workbench("run", "quick")
    assert done.returncode == 0, done.stderr
    assert "dashboard snapshots: 1 rendered in" in done.stdout
    html = run_env.client.get_document(DASHBOARDS, "teardown")["html"]
    pid = int(html.split("<p>pid ")[1].split("<")[0])
    assert not running(pid), "the rendering kernel outlived the command"
    assert not exited.exists(), "the rendering kernel was asked to stop and ran its exit handlers"


def _shows_after_writing(path: Path, *after: str) -> None:
    """A notebook whose cell tagged `results-written` is its last write; then `after`."""
    written = nbformat.v4.new_code_cell("written = True", metadata={"tags": ["results-written"]})
    _write(path, [written, *after], parameters="run_id = None")


def _waits_for(marker: Path) -> str:
    """A cell that waits (up to 60 s) until `marker` exists, or fails."""
    return (
        f"import pathlib, time\nmarker = pathlib.Path({str(marker)!r})\ndeadline = time.monotonic() + 60\n"
        "while not marker.exists():\n"
        "    assert time.monotonic() < deadline, 'the snapshots did not render while this ran'\n"
        "    time.sleep(0.1)"
    )


@pytest.mark.slow
def test_the_snapshots_render_while_the_last_notebook_shows_what_it_wrote(
    run_env: RunEnv, tmp_path: Path
) -> None:
    """Once its `results-written` cell ran, the notebook only shows what it wrote: the snapshots
    render meanwhile (here the notebook's next cell waits for the dashboard to have run)."""
    rendered = tmp_path / "rendered"
    _dashboard(
        run_env.notebooks / "dashboards",
        "early",
        f"import pathlib\npathlib.Path({str(rendered)!r}).touch()\n"
        "from IPython.display import HTML, display\ndisplay(HTML('<p>early</p>'))",
    )
    _shows_after_writing(run_env.notebooks / "shows.ipynb", _waits_for(rendered), "shown = True")
    done = run_env.workbench("run", "shows")
    assert done.returncode == 0, done.stderr
    assert "dashboard snapshots: 1 rendered in" in done.stdout.splitlines()[-1]
    record = next(r for r in run_env.runs() if r["notebook"] == "shows")
    assert record["status"] == "succeeded"
    stored = run_env.client.get_document(DASHBOARDS, "early")
    assert "<p>early</p>" in stored["html"] and stored["run_id"] == record["run_id"]
    archived = Path(record["output_path"]).with_name(f"{record['run_id']}-dashboards") / "early.html"
    assert "<p>early</p>" in archived.read_text()


@pytest.mark.slow
def test_snapshots_rendered_early_are_kept_when_the_notebook_then_fails(
    run_env: RunEnv, tmp_path: Path
) -> None:
    rendered = tmp_path / "rendered"
    touch = f"import pathlib\npathlib.Path({str(rendered)!r}).touch()"
    _dashboard(run_env.notebooks / "dashboards", "early", touch)
    fails = "raise ValueError('shown badly')"
    _shows_after_writing(run_env.notebooks / "shows.ipynb", _waits_for(rendered), fails)
    done = run_env.workbench("run", "shows")
    assert done.returncode == 1
    assert "dashboard snapshots: 1 rendered in" in done.stdout
    record = next(r for r in run_env.runs() if r["notebook"] == "shows")
    assert record["status"] == "failed" and "shown badly" in record["error"]["message"]
    assert run_env.client.get_document(DASHBOARDS, "early")["run_id"] == record["run_id"]


@pytest.mark.slow
def test_sigterm_while_rendering_early_stops_the_run_then_the_rendering(
    run_env: RunEnv, tmp_path: Path
) -> None:
    """The first SIGTERM stops the notebook (its run fails), the second the rendering, which keeps
    the previous snapshots and leaves no kernel behind."""
    started = _slow_dashboard(run_env, tmp_path)
    _shows_after_writing(run_env.notebooks / "shows.ipynb", "import time\ntime.sleep(120)")
    process = run_env.start("run", "shows")
    deadline = time.monotonic() + 90
    _wait_until(started.exists, process, deadline)
    family = descendants(process.pid)
    assert len(family) >= 2  # the notebook's kernel and the rendering kernel
    process.send_signal(signal.SIGTERM)
    run_failed = lambda: any(r["notebook"] == "shows" and r["status"] == "failed" for r in run_env.runs())  # noqa: E731
    _wait_until(run_failed, process, deadline)
    time.sleep(0.5)  # the command is waiting for the rendering now
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "dashboard snapshots: stopped; the previous ones stay" in err
    time.sleep(0.5)
    assert [pid for pid in family if running(pid)] == []
    assert run_env.client.get_document(DASHBOARDS, "slow")["html"] == "<p>before</p>"
