"""`workbench scheduler`: the schedule file run in the foreground, for machines without cron.

Each due job starts `workbench run ...` as its own process, so a crashing notebook never takes
the scheduler down and overlapping ticks are settled by the run's lease (the late one is
recorded as skipped). The file is re-read when it changes; an invalid edit keeps the last good
schedule and says why.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline_lib.runs.schedule import Job, ScheduleError, load

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()


class Scheduler:
    def __init__(self, path: Path, echo: Callable[[str], None] = print) -> None:
        self.path = path
        self.echo = echo
        self.stop_requested = threading.Event()
        self.children: list[subprocess.Popen] = []
        self.jobs: list[Job] = load(path)
        self._mtime = path.stat().st_mtime
        self._due: dict[Job, dt.datetime] = {}
        self._plan(_now())

    def _plan(self, after: dt.datetime) -> None:
        self._due = {job: job.next_times(after)[0] for job in self.jobs}

    def _reload_if_changed(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self.jobs = load(self.path)
        except ScheduleError as exc:
            self.echo(f"schedule not reloaded, keeping the previous one: {exc}")
            return
        self._plan(_now())
        self.echo(f"schedule reloaded from {self.path}: {len(self.jobs)} job(s)")

    def start(self, job: Job) -> None:
        args = [sys.executable, "-m", "pipeline_lib.cli", "run", *job.args, "--triggered-by", "scheduler"]
        self.echo(f"{_now():%Y-%m-%d %H:%M:%S}: starting `workbench run {job.command}` (line {job.line})")
        self.children.append(subprocess.Popen(args))

    def tick(self) -> None:
        """Start every job that is due, plan its next time, reap finished children."""
        self._reload_if_changed()
        now = _now()
        for job, due in list(self._due.items()):
            if due <= now:
                self.start(job)
                # Planned from now: a machine that slept through several ticks runs a job once.
                self._due[job] = job.next_times(now)[0]
        self.children = [child for child in self.children if child.poll() is None]

    def run_forever(self) -> None:
        for job in self.jobs:
            due = f"{self._due[job]:%Y-%m-%d %H:%M}"
            self.echo(f"line {job.line}: `{job.cron}` -> workbench run {job.command}; next at {due}")
        while not self.stop_requested.is_set():
            self.tick()
            until = min(self._due.values(), default=_now() + dt.timedelta(seconds=60)) - _now()
            self.stop_requested.wait(min(max(until.total_seconds(), 0.05), 1.0))
        self.stop_children()

    def stop_children(self, timeout: float = 30.0) -> None:
        """Running notebooks get SIGTERM, which ends their run as failed ("stopped") and frees the lease."""
        running = [child for child in self.children if child.poll() is None]
        for child in running:
            child.send_signal(signal.SIGTERM)
        for child in running:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
        self.children = []


def serve(path: Path, echo: Callable[[str], None] = print) -> None:
    scheduler = Scheduler(path, echo)

    def stop(signum: int, _frame: object) -> None:
        scheduler.stop_requested.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    scheduler.run_forever()
