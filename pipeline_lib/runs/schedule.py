"""The schedule file (`schedules/crontab`): cron times, each followed by a `workbench run` job, and
`after` lines that run a job whenever a scheduled run of another notebook succeeds.

    */10 * * * *  clean
    5    * * * *  process -p seed 7
    after process  school_report -p seed 3
    after school_report  school_letters

Five cron fields (or a nickname such as `@hourly`), then the notebook (or `all`) and its
options exactly as `workbench run` takes them. `after NOTEBOOK` in place of the time makes a
follower: its job runs when a scheduled run of NOTEBOOK succeeds (run by a timed line, by `all`, or
by another follower, so chains may be several deep). A follower runs one notebook, never `all`.
`#` starts a comment. A line that is not valid is an error naming the file and line, never
skipped silently; so is a follower of a notebook no line runs, and a cycle of followers.

How followers run: the scheduled `workbench run` itself starts them once its own runs have ended
(`--followers-from SCHEDULE`, added by `workbench scheduler` and by the installed cron lines), one
after another, each as `workbench run JOB --after-run RUN_ID` with the same option, which runs
its own followers in turn. So cron and the foreground scheduler chain alike, and each follower's
record names the run it followed. Followers are read from the file when the upstream run succeeds.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from croniter import CroniterBadDateError, croniter

# The built-in notebooks `workbench run all` (and a schedule's `all` job) runs first, in order;
# then every analysis in `notebooks/analyses/`, each only if these succeeded.
ALL = ("clean", "process")
AFTER = "after"

NICKNAMES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
# A notebook's name: it becomes part of file names and run ids, so no paths, dots or spaces.
NOTEBOOK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")


# Debian's cron (Vixie cron): per field, a list of `*` or a number or a three-letter name, or a
# range of them, each with an optional `/step`. croniter also takes L, W, #, ?, R and H, which
# Debian's cron refuses, and then it ignores every line of the file: those are refused here.
_FIELDS = (  # name, lowest, highest, names
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ITEM = re.compile(r"(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?")  # ASCII only


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Job:
    line: int
    cron: str
    args: tuple[str, ...]
    # A follower's upstream notebook (its line reads `after NOTEBOOK JOB`); its `cron` is then "".
    after: str | None = None

    @property
    def notebook(self) -> str:
        return self.args[0]

    @property
    def command(self) -> str:
        return shlex.join(self.args)

    @property
    def when(self) -> str:
        """The line's first words: its cron time, or `after NOTEBOOK`."""
        return f"{AFTER} {self.after}" if self.after else self.cron

    def next_times(self, after: dt.datetime, count: int = 1) -> list[dt.datetime]:
        if self.after:
            raise ValueError(f"line {self.line} runs after {self.after}, not at a time")
        times = croniter(self.cron, after)
        return [times.get_next(dt.datetime) for _ in range(count)]


@dataclass(frozen=True)
class Schedule:
    jobs: list[Job]  # the timed lines
    followers: list[Job] = field(default_factory=list)  # the `after` lines

    def following(self, notebook: str) -> list[Job]:
        """The followers of `notebook`, in line order."""
        return [f for f in self.followers if f.after == notebook]

    def chain(self, notebooks: Iterable[str]) -> Iterator[tuple[int, Job]]:
        """Every follower that runs when these notebooks succeed, with its depth (1: follows one of
        them), each under the job it follows. Finite: a cycle is refused when the file is read."""
        for notebook in notebooks:
            for follower in self.following(notebook):
                yield 1, follower
                for depth, deeper in self.chain([follower.notebook]):
                    yield depth + 1, deeper


def runs_of(job: Job, analyses: Iterable[str] = ()) -> tuple[str, ...]:
    """The notebooks a job runs itself: its own, or for `all` the built-ins then `analyses`."""
    return (*ALL, *analyses) if job.notebook == "all" else (job.notebook,)


def parse_schedule(
    text: str, source: str = "the schedule", analyses: Iterable[str] | None = None
) -> Schedule:
    """Every line of a schedule. `analyses`: the names `all` runs after the built-ins; None when not
    known (then a follower of a name no line names is accepted if some line runs `all`)."""
    jobs, followers = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ScheduleError(f"{source}, line {number}: {exc}: {raw!r}") from None
        if words[0] == AFTER:
            followers.append(_follower(words, number, raw, source))
        else:
            jobs.append(_timed(words, number, raw, source))
    schedule = Schedule(jobs, followers)
    _check_followers(schedule, source, analyses)
    return schedule


def _timed(words: list[str], number: int, raw: str, source: str) -> Job:
    width = 1 if words[0].startswith("@") else 5
    cron, args = " ".join(words[:width]), tuple(words[width:])
    if width == 1 and words[0] not in NICKNAMES:
        raise ScheduleError(
            f"{source}, line {number}: unknown nickname {words[0]!r} "
            f"(use five cron fields, one of {', '.join(sorted(NICKNAMES))}, or `after NOTEBOOK`): {raw!r}"
        )
    where = f"{source}, line {number}"
    problem = None if width == 1 else _cron_problem(words[:5]) if len(words) >= 5 else "too few fields"
    if problem is None and not croniter.is_valid(cron):
        problem = "croniter cannot read it"
    if problem is not None:
        raise ScheduleError(
            f"{where}: {cron!r} is not a valid cron time (minute hour day-of-month month "
            f"day-of-week): {problem}: {raw!r}"
        )
    try:  # Feb 30 is valid in each field and never comes: croniter raises once asked for it
        croniter(cron, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        raise ScheduleError(f"{where}: the time {cron!r} never comes (no such date): {raw!r}") from None
    _check_job(args, number, raw, source, "the cron time")
    return Job(number, cron, args)


def _cron_problem(fields: list[str]) -> str | None:
    """What Debian's cron would refuse in five cron fields, or None."""
    for text, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        for item in text.split(","):
            found = _ITEM.fullmatch(item.lower())
            if found is None:
                return f"Debian's cron does not know {item!r} in the {name} field"
            star, first, last, step = found.groups()
            values = [] if star else [_cron_value(v, names) for v in (first, last) if v is not None]
            if None in values:
                return f"Debian's cron does not know {item!r} in the {name} field"
            if any(not low <= v <= high for v in values if v is not None):
                return f"{item!r} is outside {low}-{high} in the {name} field"
            if len(values) == 2 and values[0] > values[1]:  # type: ignore[operator]
                return f"the range {item!r} runs backwards in the {name} field"
            if step is not None and not star and last is None:  # croniter: 5,15,…; cron refuses it
                return f"Debian's cron does not know {item!r} in the {name} field (a step needs * or a range)"
            if step is not None and int(step) == 0:
                return f"the step of {item!r} is 0 in the {name} field"
    return None


def _cron_value(word: str, names: tuple[str, ...]) -> int | None:
    if word.isascii() and word.isdigit():
        return int(word)
    return names.index(word) + (1 if len(names) == 12 else 0) if word in names else None


def _follower(words: list[str], number: int, raw: str, source: str) -> Job:
    if len(words) < 2:
        raise ScheduleError(
            f"{source}, line {number}: `after` needs the notebook it follows, then the job "
            f"(e.g. `after process school_report`): {raw!r}"
        )
    upstream, args = words[1], tuple(words[2:])
    if upstream == "all":
        raise ScheduleError(
            f"{source}, line {number}: `after all` is not allowed: follow one notebook "
            f"(e.g. `after process`): {raw!r}"
        )
    if not NOTEBOOK_NAME.fullmatch(upstream):
        raise ScheduleError(
            f"{source}, line {number}: {upstream!r} is not a notebook name "
            f"(letters, digits, '_' and '-'): {raw!r}"
        )
    _check_job(args, number, raw, source, f"`after {upstream}`")
    if args[0] == "all":
        raise ScheduleError(
            f"{source}, line {number}: an `after` line runs one notebook, not `all` "
            f"(give `all` its own cron time): {raw!r}"
        )
    return Job(number, "", args, after=upstream)


def _check_job(args: tuple[str, ...], number: int, raw: str, source: str, before: str) -> None:
    if not args:
        raise ScheduleError(f"{source}, line {number}: no job after {before}: {raw!r}")
    if args[0].startswith("-"):
        raise ScheduleError(f"{source}, line {number}: the job must start with a notebook name: {raw!r}")


def _check_followers(schedule: Schedule, source: str, analyses: Iterable[str] | None) -> None:
    """Each follower follows a notebook some line runs, and no chain of followers comes back."""
    runs_all = any(j.notebook == "all" for j in schedule.jobs)
    run = {j.notebook for j in [*schedule.jobs, *schedule.followers]}
    if runs_all:
        run |= {*ALL, *(analyses or ())}
    for follower in schedule.followers:
        loop = _cycle(schedule, follower)
        if loop:
            raise ScheduleError(
                f"{source}, line {follower.line}: `after {follower.after} {follower.notebook}` makes a "
                f"cycle of followers: {' -> '.join(loop)}"
            )
        if follower.after not in run and not (runs_all and analyses is None):
            raise ScheduleError(
                f"{source}, line {follower.line}: no line of the schedule runs {follower.after!r}, "
                f"so `after {follower.after}` would never run (give it a cron time or run it `all`)"
            )


def _cycle(schedule: Schedule, start: Job) -> list[str] | None:
    """The notebooks of a chain from `start` back to its upstream, if there is one."""
    assert start.after is not None
    paths = {start.notebook: [start.after, start.notebook]}
    todo = [start.notebook]
    while todo:
        notebook = todo.pop()
        if notebook == start.after:
            return paths[notebook]
        for follower in schedule.following(notebook):
            if follower.notebook not in paths:
                paths[follower.notebook] = [*paths[notebook], follower.notebook]
                todo.append(follower.notebook)
    return None


def parse(text: str, source: str = "the schedule", analyses: Iterable[str] | None = None) -> list[Job]:
    """The timed jobs of a schedule (its `after` lines checked too: see `parse_schedule`)."""
    return parse_schedule(text, source, analyses).jobs


def load_schedule(path: Path, analyses: Iterable[str] | None = None) -> Schedule:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScheduleError(f"cannot read the schedule {path}: {exc.strerror}") from None
    return parse_schedule(text, str(path), analyses)


def load(path: Path, analyses: Iterable[str] | None = None) -> list[Job]:
    """The timed jobs of the schedule file (what runs at a time; followers: `load_schedule`)."""
    return load_schedule(path, analyses).jobs
