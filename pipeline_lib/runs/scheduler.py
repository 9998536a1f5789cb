"""`workbench scheduler`: the schedule file run in the foreground, for machines without cron.

Each due job starts `workbench run ...` as its own process, so a crashing notebook never takes
the scheduler down and overlapping ticks are settled by the run's lease (the late one is
recorded as skipped). The file is re-read when it changes; an invalid edit keeps the last good
schedule and says why.

Each job is started with `--followers-from <schedule file>`, so when its run succeeds that
`workbench run` starts the job's `after` lines itself (`run_followers`, also what installed cron
lines do): one after another, each a `workbench run` of its own that records the run it followed
and runs its own followers in turn. A SIGTERM to the job is passed on to the follower running.

What a run prints (its followers' too) goes to `<data dir>/logs/scheduler-<notebook>.log`; what
the scheduler says goes to `note` (its log), except one line per failed run (a follower's too),
which goes to `echo` (the terminal of `workbench up`): the notebook, the run id, the error's
first line and the run's page.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RUNS
from pipeline_lib.runs import alerts, records
from pipeline_lib.runs.executor import NotRun
from pipeline_lib.runs.notebooks import analyses
from pipeline_lib.runs.records import RunRecord
from pipeline_lib.runs.schedule import Job, Schedule, ScheduleError, load_schedule, runs_of
from pipeline_lib.settings import Settings, child_environment

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()


@dataclass
class Child:
    """A `workbench run` the scheduler started, and where its output goes."""

    job: Job
    process: subprocess.Popen
    started_at: dt.datetime
    log_path: Path
    log_file: IO[bytes]


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        echo: Callable[[str], None] = print,
        note: Callable[[str], None] | None = None,
        check: Callable[[Schedule], list[str]] | None = None,
    ) -> None:
        """`check`: the problems `workbench run` would find in a schedule's jobs (a reloaded
        schedule with any is not taken)."""
        self.settings = settings
        self.check = check
        self.path = settings.schedule_file
        self.echo = echo
        self.note = note or echo
        self.stop_requested = threading.Event()
        self.children: list[Child] = []
        self.schedule: Schedule = load_schedule(self.path, analyses(settings))
        self._mtime = self.path.stat().st_mtime
        self._due: dict[Job, dt.datetime] = {}
        self._plan(_now())

    @property
    def jobs(self) -> list[Job]:
        return self.schedule.jobs

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
            schedule = load_schedule(self.path, analyses(self.settings))
        except ScheduleError as exc:
            self.echo(f"schedule not reloaded, keeping the previous one: {exc}")
            return
        try:
            problems = self.check(schedule) if self.check is not None else []
        except Exception as exc:  # a check that breaks must not stop the scheduler (and `up` with it)
            problems = [f"its jobs could not be checked: {exc}"]
        if problems:
            self.echo(f"schedule not reloaded, keeping the previous one: {'; '.join(problems)}")
            return
        self.schedule = schedule
        self._plan(_now())
        self.note(f"schedule reloaded from {self.path}: {len(self.jobs)} job(s)")

    def start(self, job: Job) -> None:
        args = [
            *_WORKBENCH_RUN,
            *job.args,
            "--triggered-by",
            "scheduler",
            "--followers-from",
            str(self.path.resolve()),
        ]
        logs = self.settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"scheduler-{job.notebook}.log"
        self.note(
            f"{_now():%Y-%m-%d %H:%M:%S}: starting `workbench run {job.command}` (line {job.line}), "
            f"output to {log_path}"
        )
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            args, env=child_environment(self.settings), stdout=log_file, stderr=subprocess.STDOUT
        )
        self.children.append(Child(job, process, dt.datetime.now(dt.UTC), log_path, log_file))

    def reap(self) -> None:
        """Announce each finished child's failed runs (one line each); keep the running ones."""
        running = []
        for child in self.children:
            if child.process.poll() is None:
                running.append(child)
                continue
            child.log_file.close()
            for line in self.failures(child):
                self.echo(line)
        self.children = running

    def failures(self, child: Child) -> list[str]:
        """The failure lines of the runs a finished child made; if it recorded none but failed,
        a line saying so (the db-api was unreachable, say) with its log's last line."""
        code = child.process.returncode
        try:
            failed = [
                alerts.failure_line(r, self.settings)
                for r in self._records_of(child)
                if r.status in alerts.FAILED
            ]
        except Exception as exc:  # the db-api is unreachable: the exit code still tells
            failed, why = [], f"its runs could not be read: {exc}"
        else:
            why = "it recorded no failed run"
        if failed or code == 0:
            return failed
        last = _last_line(child.log_path)
        return [
            f"FAILED `workbench run {child.job.command}` exited with {code} and {why}"
            f"{': ' + last if last else ''} (log: {child.log_path})"
        ]

    def _records_of(self, child: Child) -> list[RunRecord]:
        own = runs_of(child.job, analyses(self.settings))
        notebooks = {*own, *(f.notebook for _, f in self.schedule.chain(own))}
        since = child.started_at - dt.timedelta(seconds=1)
        with DbApiClient.from_settings(self.settings, timeout=10) as client:
            found = client.list_documents(
                RUNS,
                [("triggered_by", "eq", "scheduler"), ("host", "eq", records.host_name())],
                limit=50,
                newest_first=True,
            )
        mine = [records.load(d) for d in found]
        return sorted(
            (r for r in mine if r.notebook in notebooks and r.started_at >= since),
            key=lambda r: r.started_at,
        )

    def tick(self) -> None:
        """Start every job that is due, plan its next time, reap finished children."""
        self._reload_if_changed()
        now = _now()
        for job, due in list(self._due.items()):
            if due <= now:
                self.start(job)
                # Planned from now: a machine that slept through several ticks runs a job once.
                self._due[job] = job.next_times(now)[0]
        self.reap()

    def run_forever(self) -> None:
        for job in self.jobs:
            due = f"{self._due[job]:%Y-%m-%d %H:%M}"
            self.note(f"line {job.line}: `{job.cron}` -> workbench run {job.command}; next at {due}")
        for follower in self.schedule.followers:
            self.note(f"line {follower.line}: `{follower.when}` -> workbench run {follower.command}")
        while not self.stop_requested.is_set():
            self.tick()
            until = min(self._due.values(), default=_now() + dt.timedelta(seconds=60)) - _now()
            self.stop_requested.wait(min(max(until.total_seconds(), 0.05), 1.0))
        self.stop_children()

    def stop_children(self, timeout: float = 30.0) -> None:
        """Running notebooks get SIGTERM, which ends their run as failed ("stopped") and frees the lease."""
        running = [child.process for child in self.children if child.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        for child in self.children:
            child.log_file.close()
        self.children = []


_WORKBENCH_RUN = (sys.executable, "-m", "pipeline_lib.cli", "run")


def run_followers(
    done: Sequence[RunRecord | NotRun],
    schedule_file: Path,
    settings: Settings,
    *,
    triggered_by: str,
    echo: Callable[[str], None] = print,
) -> bool:
    """Run, one after another, the schedule's `after` lines that follow each run of `done` that
    succeeded, each as `workbench run` in a process of its own (which runs its own followers).
    The schedule is read now, so a follower added since the upstream started is run. False if
    the schedule does not read or a follower's `workbench run` exited non-zero."""
    try:
        schedule = load_schedule(schedule_file, analyses(settings))
    except ScheduleError as exc:
        echo(f"error: followers not run: {exc}")
        return False
    ok = True
    for index, record in enumerate(done):
        if not isinstance(record, RunRecord) or record.status != "succeeded":
            continue
        # What this job ran after the record (`all` runs process after clean): a follower that
        # would run it again as it ran (no options of its own) is not started.
        ran_after = {
            later.notebook
            for later in done[index + 1 :]
            if isinstance(later, RunRecord) and later.status != "skipped"
        }
        for follower in schedule.following(record.notebook):
            if follower.notebook in ran_after and follower.args == (follower.notebook,):
                echo(
                    f"run {record.run_id}: `workbench run {follower.command}` (line {follower.line}: "
                    f"after {follower.after}) not started: {follower.notebook} ran after it already"
                )
                continue
            echo(
                f"run {record.run_id}: starting `workbench run {follower.command}` "
                f"(line {follower.line}: after {follower.after})"
            )
            code = _follow(
                [
                    *_WORKBENCH_RUN,
                    *follower.args,
                    "--triggered-by",
                    triggered_by,
                    "--after-run",
                    record.run_id,
                    "--followers-from",
                    str(schedule_file),
                ],
                settings,
            )
            if code is None:  # stopped by SIGTERM: start nothing more
                return False
            ok = ok and code == 0
    return ok


def _follow(args: list[str], settings: Settings) -> int | None:
    """Run one follower to its end, passing a SIGTERM on (it then ends its run as failed and
    frees the lease); its exit code, or None if it was stopped so."""
    sys.stdout.flush()
    sys.stderr.flush()  # what this run printed comes before the follower's output
    process: subprocess.Popen[bytes] | None = None
    stopped = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopped.set()
        if process is not None:
            process.send_signal(signum)

    on_main = threading.current_thread() is threading.main_thread()
    # Before the follower starts: a SIGTERM as it starts stops it too, not only this process.
    previous = signal.signal(signal.SIGTERM, forward) if on_main else None
    try:
        process = subprocess.Popen(args, env=child_environment(settings))
        if stopped.is_set():
            process.send_signal(signal.SIGTERM)
        # Polled: a signal whose handler runs on another thread would not end a plain wait.
        while (code := process.poll()) is None:
            time.sleep(0.2)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
    return None if stopped.is_set() else code


def _last_line(path: Path, tail_bytes: int = 4096) -> str:
    """The last non-empty line of a log file (read from its end only)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - tail_bytes))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip()[:300] for line in reversed(lines) if line.strip()), "")


def serve(
    settings: Settings,
    echo: Callable[[str], None] = print,
    note: Callable[[str], None] | None = None,
    check: Callable[[Schedule], list[str]] | None = None,
) -> None:
    scheduler = Scheduler(settings, echo, note, check)

    def stop(signum: int, _frame: object) -> None:
        scheduler.stop_requested.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    scheduler.run_forever()
