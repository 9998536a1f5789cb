"""Warm kernels: the keeper (`workbench warm-kernels`, a service of `workbench up`) keeps kernels
started with the notebooks' imports done, and each is taken by exactly one run. Real keeper
processes, real `workbench run` against a real db-api, real kernels; a probe module in the
notebooks' folder records which kernel imported it, and when."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline_lib.runs.warm_kernels import PER_USE, compatible
from tests.pipeline_lib.runs.conftest import RunEnv
from tests.pipeline_lib.runs.notebooks import _write
from tests.processes import running

PROBE = (
    "import json, os, time\n"
    "from pathlib import Path\n"
    "found = {'pid': os.getpid(), 'at': time.time()}\n"
    "Path(__file__).with_name('imported.json').write_text(json.dumps(found))\n"
    "WARM_IMPORTS = ('warm_declared',)  # what it would import only when its functions run\n"
)
DECLARED = (
    "import os\nfrom pathlib import Path\nPath(__file__).with_name('declared').write_text(str(os.getpid()))\n"
)
USES_PROBE = (
    "import os\n"
    "import warm_probe  # noqa\n"
    "from pipeline_lib.client.sync import DbApiClient\n"
    "with DbApiClient.from_settings() as client:\n"
    "    client.put_document('processed', 'warm', {\n"
    "        'pid': os.getpid(), 'fence': str(client.fence), 'cwd': os.getcwd(),\n"
    "        'data_dir': os.environ['WORKBENCH_DATA_DIR']})\n"
)
# Takes a warm kernel when told to (file `go`), says whether it got one, holds it until `done`.
CLAIMS = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from pipeline_lib.runs.warm_kernels import claim\n"
    "from pipeline_lib.settings import child_environment, get_settings\n"
    "folder = Path(sys.argv[1])\n"
    "settings = get_settings()\n"
    "print('waiting', flush=True)\n"
    "while not (folder / 'go').exists():\n"
    "    time.sleep(0.01)\n"
    "got = claim(settings, child_environment(settings))\n"
    "print(got.info['pid'] if got else 'none', flush=True)\n"
    "while not (folder / 'done').exists():\n"
    "    time.sleep(0.05)\n"
)


def claimant(run_env: RunEnv, folder: Path) -> subprocess.Popen[str]:
    """A process running CLAIMS on `folder`; it says `waiting`, then the pid it got or `none`."""
    command = [sys.executable, "-c", CLAIMS, str(folder)]
    return subprocess.Popen(command, env=run_env.env, stdout=subprocess.PIPE, text=True)


def said(process: subprocess.Popen[str]) -> str:
    """The next line `process` printed."""
    assert process.stdout is not None
    return process.stdout.readline().strip()


@contextmanager
def keeper(run_env: RunEnv, kernels: int) -> Iterator[subprocess.Popen]:
    """`workbench warm-kernels` keeping `kernels` kernels; it must stop cleanly on SIGTERM."""
    run_env.env["WORKBENCH_WARM_KERNELS"] = str(kernels)  # the runs' settings too: same environment
    log = run_env.data_dir.parent / "keeper.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline_lib.cli", "warm-kernels"],
            env=run_env.env, stdout=output, stderr=output, text=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]


def ready(run_env: RunEnv, count: int, *, other_than: frozenset[int] | set[int] = frozenset()) -> list[dict]:
    """The ready kernels' files, once `count` are ready (none of them with a pid in `other_than`)."""
    folder = run_env.data_dir / "warm-kernels" / "ready"
    deadline = time.monotonic() + 90
    while True:
        try:
            found = [json.loads(path.read_text()) for path in sorted(folder.iterdir())]
        except (OSError, ValueError):  # not made yet, or a file moved while read
            found = []
        if len(found) >= count and not {info["pid"] for info in found} & other_than:
            return found
        assert time.monotonic() < deadline, f"{count} warm kernel(s) not ready: {found}"
        time.sleep(0.2)


def gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not running(pid)


def _probe(run_env: RunEnv) -> None:
    (run_env.notebooks / "warm_probe.py").write_text(PROBE)
    (run_env.notebooks / "warm_declared.py").write_text(DECLARED)
    _write(run_env.notebooks / "clean.ipynb", [USES_PROBE])


def _run(run_env: RunEnv, *args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_lib.cli", "run", *args],
        env=env or run_env.env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    written = run_env.client.get_document("processed", "warm")
    assert written is not None
    return written


def test_only_what_a_run_sets_or_a_terminal_shows_may_differ() -> None:
    started = {"PATH": "/usr/bin", "WORKBENCH_DATA_DIR": "/srv/var", "PWD": "/home/a", "TERM": "xterm"}
    assert compatible(started, {**started, "PWD": "/tmp", "SHLVL": "3", **dict.fromkeys(PER_USE, "1")})
    assert not compatible(started, {**started, "OMP_NUM_THREADS": "1"})
    assert not compatible(started, {**started, "WORKBENCH_DATA_DIR": "/srv/other"})
    assert not compatible(started, {k: v for k, v in started.items() if k != "PATH"})


@pytest.mark.slow
def test_a_run_takes_a_warm_kernel_with_its_imports_done_and_the_keeper_replaces_it(run_env: RunEnv) -> None:
    _probe(run_env)
    with keeper(run_env, 1):
        [warm] = ready(run_env, 1)
        imported = json.loads((run_env.notebooks / "imported.json").read_text())
        assert imported["pid"] == warm["pid"], "the warm kernel did not import the notebook's modules"
        declared = (run_env.notebooks / "declared").read_text()
        assert declared == str(warm["pid"]), "the warm kernel did not import what they declare"
        written = _run(run_env, "clean")
        assert written["pid"] == warm["pid"], "the run started its own kernel"
        assert written["cwd"] == str(run_env.notebooks) and written["data_dir"] == str(run_env.data_dir)
        lease, _, generation = written["fence"].rpartition(":")
        assert lease == "run:clean" and int(generation) >= 1  # its run's lease, set on taking it
        [record] = run_env.runs()
        assert imported["at"] < record["started_at"].replace(tzinfo=dt.UTC).timestamp()
        assert gone(warm["pid"]), "the kernel outlived its run"
        [fresh] = ready(run_env, 1, other_than={warm["pid"]})
        assert running(fresh["pid"])
    assert not running(fresh["pid"]), "the keeper left a ready kernel behind"
    assert list((run_env.data_dir / "warm-kernels" / "ready").iterdir()) == []


@pytest.mark.slow
def test_each_warm_kernel_is_taken_by_one_run_only(run_env: RunEnv, tmp_path: Path) -> None:
    with keeper(run_env, 1):
        [warm] = ready(run_env, 1)
        claimants = [claimant(run_env, tmp_path) for _ in range(4)]
        try:
            assert [said(c) for c in claimants] == ["waiting"] * 4
            (tmp_path / "go").touch()
            got = sorted(said(c) for c in claimants)
            assert got == [str(warm["pid"]), "none", "none", "none"]
        finally:
            (tmp_path / "done").touch()
            for each in claimants:
                each.wait(timeout=30)
        assert gone(warm["pid"]), "the keeper did not stop the kernel its claimant was done with"
        ready(run_env, 1, other_than={warm["pid"]})


@pytest.mark.slow
def test_a_run_killed_while_it_holds_a_warm_kernel_leaves_no_kernel_behind(
    run_env: RunEnv, tmp_path: Path
) -> None:
    with keeper(run_env, 1):
        [warm] = ready(run_env, 1)
        (tmp_path / "go").touch()
        holder = claimant(run_env, tmp_path)
        assert said(holder) == "waiting"
        assert said(holder) == str(warm["pid"])
        holder.kill()
        holder.wait()
        assert gone(warm["pid"]), "the kernel of a killed run lives on"
        ready(run_env, 1, other_than={warm["pid"]})


@pytest.mark.slow
def test_a_kernel_whose_modules_changed_since_it_started_is_not_used(run_env: RunEnv) -> None:
    _probe(run_env)
    with keeper(run_env, 1):
        [warm] = ready(run_env, 1)
        probe = run_env.notebooks / "warm_probe.py"
        probe.write_text(PROBE + "EDITED = True\n")  # an analyst's edit after the kernel imported it
        written = _run(run_env, "clean")
        assert written["pid"] != warm["pid"], "the run used a kernel with the module as it was"
        assert gone(warm["pid"]), "the stale kernel was kept"
        ready(run_env, 1, other_than={warm["pid"]})


@pytest.mark.slow
def test_a_run_in_another_environment_starts_its_own_kernel_and_leaves_the_warm_one(run_env: RunEnv) -> None:
    _probe(run_env)
    with keeper(run_env, 1):
        [warm] = ready(run_env, 1)
        written = _run(run_env, "clean", env={**run_env.env, "OMP_NUM_THREADS": "1"})
        assert written["pid"] != warm["pid"]
        assert ready(run_env, 1) == [warm] and running(warm["pid"])


@pytest.mark.slow
def test_a_warm_kernel_no_run_used_goes_back_to_the_ready_ones(run_env: RunEnv) -> None:
    _write(run_env.notebooks / "clean.ipynb", ["raise ValueError('bad data')"])
    with keeper(run_env, 2):
        warm = {info["pid"] for info in ready(run_env, 2)}
        done = run_env.workbench("run", "all")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "not run because clean failed" in done.stdout + done.stderr
        # clean used one kernel; the one taken for process, which did not run, is ready again
        left = {info["pid"] for info in ready(run_env, 2)} & warm
        assert len(left) == 1 and all(running(pid) for pid in left)
