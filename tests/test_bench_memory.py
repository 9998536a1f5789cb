"""The benches' process accounting (`tests/bench/memory.py`): CPU time per role during a run."""

from __future__ import annotations

import subprocess
import sys

from tests.bench.memory import run_sampled

# Burns `seconds` of its own CPU time (however loaded the machine is), then idles long enough
# for the sampler to see the total before it exits (on a loaded machine its thread may wake late).
BURN = "import time\nwhile time.process_time() < {seconds}: pass\ntime.sleep(2.5)\n"


def test_cpu_time_is_counted_per_role_from_the_start_of_the_run() -> None:
    # A stand-in db-api that worked before the run and idles during it: none of its time counts.
    stand_in = BURN.format(seconds=0.5) + "print('idle', flush=True)\ntime.sleep(60)\n"
    db_api = subprocess.Popen([sys.executable, "-c", stand_in], stdout=subprocess.PIPE, text=True)
    try:
        assert db_api.stdout is not None and db_api.stdout.readline() == "idle\n"
        # The run burns 0.6 s itself and starts a worker that burns 0.7 s.
        run = (
            "import subprocess, sys\n"
            f"worker = subprocess.Popen([sys.executable, '-c', {BURN.format(seconds=0.7)!r}])\n"
            + BURN.format(seconds=0.6)
            + "worker.wait()\n"
        )
        done, measured = run_sampled([sys.executable, "-c", run], db_api.pid, interval=0.1)
    finally:
        db_api.kill()
        db_api.wait()
    assert done.returncode == 0, done.stderr
    cpu = measured.cpu_seconds()
    assert 0.5 <= cpu["run python"] <= 1.2
    assert 0.6 <= cpu["python workers"] <= 1.3
    assert cpu["db-api"] < 0.2
    assert cpu["jvm"] == 0
    figures = measured.as_dict()
    assert figures["cpu s all"] == round(sum(cpu.values()), 1)
    assert figures["cpu wall s"] >= 0.8


# Touches `mb` MB, then forks: parent and child share those pages (copy-on-write) while both sleep.
SHARES = (
    "import os, time\n"
    "block = b'x' * ({mb} * 2**20)\n"
    "if os.fork() == 0:\n"
    "    time.sleep(2.5)\n"
    "    os._exit(0)\n"
    "time.sleep(2.5)\n"
    "os.wait()\n"
)


def test_pages_shared_by_forked_processes_count_once() -> None:
    done, measured = run_sampled([sys.executable, "-c", SHARES.format(mb=300)], None, interval=0.1)
    assert done.returncode == 0, done.stderr
    figures = measured.as_dict()
    # Two processes of 300 MB each by their resident sets, holding the same 300 MB.
    assert figures["peak RSS MB all"] >= 580, figures
    assert 290 <= figures["peak MB all"] <= 400, figures
    assert figures["peak MB python workers"] >= 100, figures  # the child's share was seen
