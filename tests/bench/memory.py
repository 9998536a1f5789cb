"""Peak resident memory of a run's processes, by role, sampled while the run works.

A Spark run is several processes: the run's Python (the driver's Python side), the JVM (the driver
and, on local[N], the executors), Python workers the JVM forks for the data source and Arrow UDFs,
and the db-api it reads from and commits to, with its scan worker processes. `getrusage` sees only
one of them; this samples the trees of the run and of the db-api every `interval` seconds and keeps,
per role, the largest sum seen at one moment (processes of one role are alive together).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

import psutil

ROLES = ("run python", "jvm", "python workers", "db-api")


def role_of(process: psutil.Process, run_pid: int) -> str:
    if process.pid == run_pid:
        return "run python"
    name = process.name()
    if name.startswith("java"):
        return "jvm"
    return "python workers"


class PeakMemory:
    """Largest resident set per role, in MB, over the samples taken so far."""

    def __init__(self) -> None:
        self.peak_mb: dict[str, float] = dict.fromkeys(ROLES, 0.0)
        self.total_peak_mb = 0.0

    def sample(
        self,
        run_pid: int | None,
        db_api_pid: int | None,
        spark_server_pid: int | None,
        replica_pids: Sequence[int] = (),
        cluster_pids: Sequence[int] = (),
    ) -> None:
        now: dict[str, float] = dict.fromkeys(ROLES, 0.0)
        replicas = [process for pid in replica_pids for process in _tree(pid)]
        for process in [*_tree(db_api_pid), *replicas]:  # with their scan worker processes
            with contextlib.suppress(psutil.Error):  # it ended between the listing and the reading
                now["db-api"] += process.memory_info().rss / 2**20
        # A warm Spark's server (its JVM and Python workers) works for the run it serves, as do a
        # standalone cluster's workers (their executors and Python workers).
        served = [process for pid in (spark_server_pid, *cluster_pids) for process in _tree(pid)]
        for process in [*_tree(run_pid), *served]:
            with contextlib.suppress(psutil.Error):
                now[role_of(process, run_pid)] += process.memory_info().rss / 2**20
        for role, mb in now.items():
            self.peak_mb[role] = max(self.peak_mb[role], mb)
        self.total_peak_mb = max(self.total_peak_mb, sum(now.values()))

    def as_dict(self) -> dict[str, float]:
        return {**{f"peak MB {role}": round(mb) for role, mb in self.peak_mb.items()},
                "peak MB all": round(self.total_peak_mb)}  # fmt: skip


def _tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


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
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    stop = threading.Event()

    def sample_until_stopped() -> None:
        while not stop.wait(interval):
            peaks.sample(process.pid, db_api_pid, spark_server_pid, replica_pids, cluster_pids)

    sampler = threading.Thread(target=sample_until_stopped, daemon=True)
    sampler.start()
    try:
        out, err = process.communicate()
    finally:
        stop.set()
        sampler.join()
    return subprocess.CompletedProcess(args, process.returncode, out, err), peaks


def run_measured(args: list[str], what: str, db_api_pid: int | None, **options: Any) -> dict[str, Any]:
    """Run a bench's one-run command (its figures as JSON on its last line of output), sampled as
    `run_sampled` does (`options` go there): its figures with the peaks; RuntimeError naming `what`
    if it failed."""
    done, peaks = run_sampled(args, db_api_pid, **options)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), **peaks.as_dict()}
