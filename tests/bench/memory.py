"""Peak memory and CPU time of a run's processes, by role, sampled while the run works.

A Spark run is several processes: the run's Python (the driver's Python side), the JVM (the driver
and, on local[N], the executors), Python workers the JVM forks for the data source and Arrow UDFs,
and the db-api it reads from and commits to, with its scan worker processes. `getrusage` sees only
one of them; this samples the trees of the run and of the db-api every `interval` seconds and keeps,
per role, the largest sum seen at one moment (processes of one role are alive together), and the
CPU time each role used during the run: on a machine of few cores the roles compete for them, so
a step is only as fast as the CPU time it needs allows.

Memory is each process's proportional set size (PSS): its private pages, and each page it shares
with others divided among them. Python workers forked from one zygote, or scan workers of one
db-api, share most of their pages; their resident sets (RSS) would count those pages once per
process, so a sum of RSS overstates what the run holds. A JVM, or any process of a GB or more,
counts its RSS (`_proportional`). The largest RSS sum is kept too (`peak RSS MB all`), the figure
benches printed before.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from pipeline_lib.spark import daemon_zygote

ROLES = ("run python", "jvm", "python workers", "db-api")
# How the keys this module adds to a run's figures begin.
MEASURED = ("peak MB", "peak RSS MB", "cpu s", "cpu wall s")


def role_of(process: psutil.Process, run_pid: int | None) -> str:
    if process.pid == run_pid:
        return "run python"
    name = process.name()
    if name.startswith("java"):
        return "jvm"
    return "python workers"


class PeakMemory:
    """Largest proportional set size per role, in MB, over the samples taken so far; and the CPU
    seconds each role used since the first sample (`begin`)."""

    def __init__(self) -> None:
        self.peak_mb: dict[str, float] = dict.fromkeys(ROLES, 0.0)
        self.total_peak_mb = 0.0
        self.total_peak_rss_mb = 0.0
        # Per process: its role, the CPU time it had used when first seen and the latest seen.
        # A process running at `begin` (the db-api, a warm Spark) counts from then; one first seen
        # later (the JVM, a Python worker) from zero: its start time is no guide, as psutil dates
        # processes from a boot time in whole seconds. The CPU time of a process in its last
        # `interval` before it ends is missed.
        self._cpu: dict[tuple[int, float], tuple[str, float, float]] = {}
        self._began = 0.0
        self.wall_seconds = 0.0  # from `begin` to the run's process ending

    def begin(self, db_api_pids: Sequence[int | None], served_pids: Sequence[int | None]) -> None:
        """Note the CPU time the processes already running (and their trees) have used: the
        db-api's (and replicas'), and a warm Spark's or a cluster's."""
        self._began = time.perf_counter()
        for pid in db_api_pids:
            for process in _tree(pid):
                self._note_cpu(process, "db-api", running_before=True)
        for pid in served_pids:
            for process in _tree(pid):
                with contextlib.suppress(psutil.Error):
                    self._note_cpu(process, role_of(process, None), running_before=True)

    def end(self) -> None:
        """The run's process has ended: its wall time since `begin`."""
        self.wall_seconds = time.perf_counter() - self._began

    def sample(
        self,
        run_pid: int | None,
        db_api_pid: int | None,
        served_pids: Sequence[int | None] = (),
        replica_pids: Sequence[int] = (),
    ) -> None:
        now: dict[str, float] = dict.fromkeys(ROLES, 0.0)
        rss = 0.0
        replicas = [process for pid in replica_pids for process in _tree(pid)]
        # A warm Spark's server (its JVM and Python workers) works for the run it serves, as do a
        # standalone cluster's workers (their executors and Python workers).
        served = [process for pid in served_pids for process in _tree(pid)]
        roles = [
            *[("db-api", process) for process in [*_tree(db_api_pid), *replicas]],  # with scan workers
            *[(None, process) for process in [*_tree(run_pid), *served]],
        ]
        for role, process in roles:
            with contextlib.suppress(psutil.Error):  # it ended between the listing and the reading
                role = role or role_of(process, run_pid)
                resident = process.memory_info().rss
                now[role] += _proportional(process, role, resident) / 2**20
                rss += resident / 2**20
            if role is not None:  # its CPU time counts even where its memory could not be read
                self._note_cpu(process, role)
        for role, mb in now.items():
            self.peak_mb[role] = max(self.peak_mb[role], mb)
        self.total_peak_mb = max(self.total_peak_mb, sum(now.values()))
        self.total_peak_rss_mb = max(self.total_peak_rss_mb, rss)

    def _note_cpu(self, process: psutil.Process, role: str, *, running_before: bool = False) -> None:
        with contextlib.suppress(psutil.Error):
            key = (process.pid, process.create_time())  # a reused pid is another process
            times = process.cpu_times()
            used = times.user + times.system
            known = self._cpu.get(key)
            if known is None:  # counted from zero unless it was running at `begin`
                known = (role, used if running_before else 0.0, used)
            # The latest role: a process first seen between fork and exec (a JVM being started)
            # still bore its parent's name.
            self._cpu[key] = (role, known[1], max(known[2], used))

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per role since `begin`."""
        spent = dict.fromkeys(ROLES, 0.0)
        for role, first, last in self._cpu.values():
            spent[role] += last - first
        return spent

    def as_dict(self) -> dict[str, float]:
        cpu = self.cpu_seconds()
        return {
            **{f"peak MB {role}": round(mb) for role, mb in self.peak_mb.items()},
            "peak MB all": round(self.total_peak_mb),
            "peak RSS MB all": round(self.total_peak_rss_mb),
            **{f"cpu s {role}": round(seconds, 1) for role, seconds in cpu.items()},
            "cpu s all": round(sum(cpu.values()), 1),
            "cpu wall s": round(self.wall_seconds, 1),
        }


def cpu_summary(runs: Sequence[dict[str, Any]]) -> str:
    """The median CPU seconds per role of `runs` (`run_measured` results), and what share of the
    machine's cores they kept busy over the run's process, from its start to its exit."""
    cores = os.cpu_count() or 1
    per_role = ", ".join(
        f"{role} {statistics.median(r[f'cpu s {role}'] for r in runs):.1f}" for role in ROLES
    )
    total = statistics.median(r["cpu s all"] for r in runs)
    wall = statistics.median(r["cpu wall s"] for r in runs)
    busy = total / (cores * wall) if wall else 0.0
    return f"{per_role}; all {total:.1f} of {cores} cores x {wall:.1f} s ({busy:.0%} busy)"


# Reading a process's PSS walks its page tables: about 20 ms of CPU per GB resident here, against
# microseconds for its RSS, and the samples must not take a core from the run they measure. Pages
# are shared by the forked Pythons (a zygote's daemons and workers, scan workers); a JVM's, or those
# of any process this big, are nearly all its own, so its RSS is close to its PSS.
_PSS_BELOW = 1 << 30


def _proportional(process: psutil.Process, role: str, resident: int) -> int:
    """The process's proportional set size, or its resident set where that costs too much to read
    or is not readable."""
    if role == "jvm" or resident >= _PSS_BELOW:
        return resident
    try:
        return int(process.memory_full_info().pss)
    except psutil.AccessDenied:
        return resident


def _tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return []
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:  # a child ended while they were listed: the root still counts
        return [root]


def run_sampled(
    args: list[str],
    db_api_pid: int | None,
    interval: float = 0.25,
    spark_server_pid: int | None = None,
    replica_pids: Sequence[int] = (),
    cluster_pids: Sequence[int] = (),
    **popen: Any,
) -> tuple[subprocess.CompletedProcess[str], PeakMemory]:
    """Run a command to its end while sampling its process tree, the db-api's (and those of other
    db-api replicas) and a warm Spark server's (or a standalone cluster's workers) every `interval` s."""
    peaks = PeakMemory()
    # The Python daemons a zygote forks for a Spark, and their workers, are not that Spark's
    # children: a warm Spark's zygote counts as the server's, and the zygote a driver JVM started
    # by the run gets (`daemon_zygote`) as the run's, once it appears.
    zygote = daemon_zygote.zygote_pid(spark_server_pid) if spark_server_pid else None
    served = [spark_server_pid, zygote, *cluster_pids]
    peaks.begin([db_api_pid, *replica_pids], served)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    stop = threading.Event()

    def sample_until_stopped() -> None:
        own_zygotes: list[int] = []
        samples = 0
        while not stop.wait(interval):
            if not own_zygotes and samples % 4 == 0:  # a look at /proc a second until one is found
                run = {p.pid for p in _tree(process.pid)}
                own_zygotes = [pid for server, pid in daemon_zygote.zygotes().items() if server in run]
            samples += 1
            peaks.sample(process.pid, db_api_pid, [*served, *own_zygotes], replica_pids)

    sampler = threading.Thread(target=sample_until_stopped, daemon=True)
    sampler.start()
    try:
        out, err = process.communicate()
    finally:
        stop.set()
        sampler.join()
        peaks.end()
    return subprocess.CompletedProcess(args, process.returncode, out, err), peaks


def run_measured(args: list[str], what: str, db_api_pid: int | None, **options: Any) -> dict[str, Any]:
    """Run a bench's one-run command (its figures as JSON on its last line of output), sampled as
    `run_sampled` does (`options` go there): its figures with the peaks; RuntimeError naming `what`
    if it failed."""
    done, peaks = run_sampled(args, db_api_pid, **options)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), **peaks.as_dict()}
