"""`workbench scheduler`: the schedule file run in the foreground, for machines without cron.

Each due job starts `workbench run ...` as its own process, so a crashing notebook never takes
the scheduler down and overlapping ticks are settled by the run's lease (the late one is
recorded as skipped). The file is re-read when it changes; an invalid edit keeps the last good
schedule and says why.

Each job is started with `--followers-from <schedule file>`, so when its runs have ended that
`workbench run` runs the job's whole chain of `after` lines itself (`run_followers`, also what
installed cron lines do): one after another, each a `workbench run` of its own that records the
run it followed, each job once, after all it follows in the chain. A SIGTERM to the job is passed
on to the follower running.

Once a day it forgets old runs (`workbench prune-runs` in a process of its own, `runs/retention.py`).

What a run prints (its followers' too) goes to `<data dir>/logs/scheduler-<notebook>.log`; what
the scheduler says goes to `note` (its log), except one line per failed run (a follower's too),
which goes to `echo` (the terminal of `workbench up`): the notebook, the run id, the error's
first line and the run's page.
"""

from __future__ import annotations

import datetime as dt
import itertools
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
from pipeline_lib.runs import alerts, records, retention
from pipeline_lib.runs.executor import NotRun
from pipeline_lib.runs.notebooks import analyses
from pipeline_lib.runs.records import RunRecord
from pipeline_lib.runs.schedule import Job, Schedule, ScheduleError, Step, load_schedule, runs_of
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


@dataclass
class Pruning:
    """The `workbench prune-runs` the scheduler started, and where its output goes."""

    process: subprocess.Popen
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
        self.pruning: Pruning | None = None

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
        for note in schedule.ignored:
            self.note(f"warning: {note}")

    def start(self, job: Job) -> None:
        args = [
            *_WORKBENCH_RUN,
            *job.args,
            "--triggered-by",
            "scheduler",
            "--followers-from",
            str(self.path.resolve()),
        ]
        what = f"`workbench run {job.command}` (line {job.line})"
        process, log_path, log_file = self._launch(args, what, job.notebook)
        self.children.append(Child(job, process, dt.datetime.now(dt.UTC), log_path, log_file))

    def _launch(self, args: list[str], what: str, log_name: str) -> tuple[subprocess.Popen, Path, IO[bytes]]:
        """`args` started as a process of its own, its output appended to `scheduler-<log_name>.log`."""
        logs = self.settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"scheduler-{log_name}.log"
        self.note(f"{_now():%Y-%m-%d %H:%M:%S}: starting {what}, output to {log_path}")
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            args, env=child_environment(self.settings), stdout=log_file, stderr=subprocess.STDOUT
        )
        return process, log_path, log_file

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
        """Start every job that is due, plan its next time, reap finished children; once a day,
        forget old runs."""
        self._reload_if_changed()
        now = _now()
        for job, due in list(self._due.items()):
            if due <= now:
                self.start(job)
                # Planned from now: a machine that slept through several ticks runs a job once.
                self._due[job] = job.next_times(now)[0]
        self.reap()
        self._prune_when_due()

    def _prune_when_due(self) -> None:
        """`workbench prune-runs` in a process of its own (as the jobs: its failure never stops the
        scheduler) a day after the last; tried once a day, whether it fails or not."""
        if self.pruning is not None:
            if self.pruning.process.poll() is None:
                return
            self.pruning.log_file.close()
            if self.pruning.process.returncode:
                self.echo(
                    f"FAILED `workbench prune-runs` exited with {self.pruning.process.returncode} "
                    f"(log: {self.pruning.log_path})"
                )
            self.pruning = None
        archive = self.settings.run_archive
        if not self.settings.run_keep_days or not retention.due(archive, PRUNE_EVERY, time.time()):
            return
        retention.mark(archive, time.time())
        self.pruning = Pruning(
            *self._launch([*_WORKBENCH, "prune-runs"], "`workbench prune-runs`", "prune-runs")
        )

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
        if self.pruning is not None and self.pruning.process.poll() is None:
            running.append(self.pruning.process)
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
        if self.pruning is not None:
            self.pruning.log_file.close()
            self.pruning = None


_WORKBENCH = (sys.executable, "-m", "pipeline_lib.cli")
_WORKBENCH_RUN = (*_WORKBENCH, "run")
PRUNE_EVERY = dt.timedelta(days=1)


def run_followers(
    done: Sequence[RunRecord | NotRun],
    schedule_file: Path,
    settings: Settings,
    *,
    triggered_by: str,
    echo: Callable[[str], None] = print,
) -> bool:
    """Run the chain of the schedule's `after` lines that follow the runs of `done`: one job after
    another, each once (however many paths of the chain lead to it), after every run it follows in
    the chain has ended, and only if one of those succeeded; each as `workbench run` in a process
    of its own, which runs no followers (this one runs them all, so it knows what ran). The
    schedule is read now, so a follower added since the upstream started is run. False if the
    schedule does not read or a follower's `workbench run` exited non-zero."""
    try:
        schedule = load_schedule(schedule_file, analyses(settings))
    except ScheduleError as exc:
        echo(f"error: followers not run: {exc}")
        return False
    started = [r for r in done if isinstance(r, RunRecord)]
    chain = _ChainRuns(started)
    ok = True
    for step in schedule.steps(r.notebook for r in started):
        line = chain.trigger(step)
        if line is None:  # nothing it follows succeeded
            continue
        follower, upstream_run = step.job, chain.last_success(line.after)
        what = f"`workbench run {follower.command}` (line {line.line}: {line.when})"
        # `all` runs process after clean: a follower that would run it again as it ran (no options
        # of its own) is not started.
        if follower.args == (follower.notebook,) and chain.ran_after(follower.notebook, upstream_run):
            echo(f"run {upstream_run}: {what} not started: {follower.notebook} ran after it already")
            continue
        echo(f"run {upstream_run}: starting {what}")
        code = _follow(
            [*_WORKBENCH_RUN, *follower.args, "--triggered-by", triggered_by, "--after-run", upstream_run],
            settings,
        )
        if code is None:  # stopped by SIGTERM: start nothing more
            return False
        ok = ok and code == 0
        if code == 0:  # succeeded, or skipped (another run of it held the lease): its record says
            ok = _note_success(chain, follower, upstream_run, settings, echo) and ok
    return ok


class _ChainRuns:
    """What a chain has run so far: each notebook's last run that succeeded, and the order of
    the chain's first runs (those of the `workbench run` that runs the chain)."""

    def __init__(self, first_runs: Sequence[RunRecord]) -> None:
        self._successes: dict[str, tuple[int, str]] = {}  # notebook -> (order, run id)
        self._order = itertools.count()
        self._first_position = {r.run_id: i for i, r in enumerate(first_runs)}
        self._first_last_ran = {r.notebook: i for i, r in enumerate(first_runs) if r.status != "skipped"}
        for record in first_runs:
            if record.status == "succeeded":
                self.succeeded(record.notebook, record.run_id)

    def succeeded(self, notebook: str, run_id: str) -> None:
        self._successes[notebook] = (next(self._order), run_id)

    def last_success(self, notebook: str | None) -> str:
        return self._successes[notebook or ""][1]

    def trigger(self, step: Step) -> Job | None:
        """The line of `step` whose notebook succeeded last in this chain; None if none did."""
        lines = [line for line in step.lines if line.after in self._successes]
        return max(lines, key=lambda line: self._successes[line.after or ""][0], default=None)

    def ran_after(self, notebook: str, run_id: str) -> bool:
        """Whether the chain's first runs ran `notebook` after the run `run_id` (one of them)."""
        position = self._first_position.get(run_id)
        return position is not None and self._first_last_ran.get(notebook, -1) > position


def _note_success(
    chain: _ChainRuns, follower: Job, after_run_id: str, settings: Settings, echo: Callable[[str], None]
) -> bool:
    """Note the follower's run in `chain` if it succeeded; False (saying why) if it cannot be read,
    since what follows it then does not start."""
    try:
        run = _follower_run(follower.notebook, after_run_id, settings)
    except Exception as exc:  # the db-api is unreachable, say
        run, why = None, str(exc)
    else:
        why = "no run of it names that run"
    if run is None:
        echo(
            f"error: the run of `workbench run {follower.command}` after run {after_run_id} could "
            f"not be read, so its followers are not started: {why}"
        )
        return False
    if run.status == "succeeded":
        chain.succeeded(follower.notebook, run.run_id)
    return True


def _follower_run(notebook: str, after_run_id: str, settings: Settings) -> RunRecord | None:
    """The run a follower's `workbench run` recorded (it prints the run id to its log only): the
    newest run of its notebook that names the run it followed (followers run one at a time)."""
    with DbApiClient.from_settings(settings, timeout=10) as client:
        found = client.list_documents(
            RUNS,
            [("after_run_id", "eq", after_run_id), ("notebook", "eq", notebook)],
            limit=1,
            newest_first=True,
        )
    return records.load(found[0]) if found else None


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
