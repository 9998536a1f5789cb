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
skipped silently; so is a follower of a notebook no line runs, a cycle of followers, and an
`after` line written twice (a paste would otherwise run its job twice).

A job reached along several paths of one chain (`after b d` and `after c d`, where b and c both
follow a) runs once per run of the chain's start, after every line it follows in that chain has
ended, if any of the runs it follows succeeded. A job is its command: `d -p n 1` and `d -p n 2`
are two jobs, and a follower of d runs once, after both.

How followers run: the scheduled `workbench run` itself runs its whole chain once its own runs
have ended (`--followers-from SCHEDULE`, added by `workbench scheduler` and by the installed cron
lines), one job after another in the order of `Schedule.steps`, each as
`workbench run JOB --after-run RUN_ID` (the last run it follows that succeeded). So cron and the
foreground scheduler chain alike, and each follower's record names the run it followed. The
file is read once, when the chain's first runs have ended.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    followers: list[Job] = field(default_factory=list)  # the `after` lines, each written once
    ignored: list[str] = field(default_factory=list)  # why lines repeating another were left out

    def following(self, notebook: str) -> list[Job]:
        """The followers of `notebook`, in line order."""
        return [f for f in self.followers if f.after == notebook]

    def chain(self, notebooks: Iterable[str]) -> Iterator[tuple[int, Job]]:
        """Every follower that runs when these notebooks succeed, once, with its depth (1: follows
        one of them), each under the last line it follows (see `steps`)."""
        return ((step.depth, step.job) for step in self.steps(notebooks))

    def steps(self, notebooks: Iterable[str]) -> list[Step]:
        """The jobs of the chain that starts with runs of `notebooks`, each once, in the order
        they run: depth first in line order, a job only once every line of it in the chain
        has been reached (all it follows have ended), listed under the last. Linear in the lines;
        a job on a cycle (refused when the file is read) is left out, never looped."""
        starts = list(dict.fromkeys(notebooks))
        by_upstream = _by_upstream(self.followers)
        lines_of = _reached_jobs(starts, by_upstream)
        lines_left = {args: len(lines) for args, lines in lines_of.items()}
        # A notebook's followers start once every job of it in the chain has run.
        jobs_left = Counter(args[0] for args in lines_of)
        steps: list[Step] = []
        todo = [(0, iter(by_upstream.get(n, ()))) for n in reversed(starts) if not jobs_left[n]]
        while todo:  # a stack, not recursion: a chain may be thousands of lines deep
            depth, lines = todo[-1]
            line = next(lines, None)
            if line is None:
                todo.pop()
                continue
            lines_left[line.args] -= 1
            if lines_left[line.args]:
                continue
            steps.append(Step(depth + 1, line, tuple(sorted(lines_of[line.args], key=_line_number))))
            jobs_left[line.notebook] -= 1
            if not jobs_left[line.notebook]:
                todo.append((depth + 1, iter(by_upstream.get(line.notebook, ()))))
        return steps


@dataclass(frozen=True)
class Step:
    """One job of a chain: its depth, the line it is listed under (the last it follows), and
    every line of the chain that runs this same command, in line order."""

    depth: int
    job: Job
    lines: tuple[Job, ...]


def _line_number(job: Job) -> int:
    return job.line


def _by_upstream(followers: Iterable[Job]) -> dict[str, list[Job]]:
    """The `after` lines by the notebook they follow, each list in line order."""
    by_upstream: dict[str, list[Job]] = {}
    for follower in followers:
        assert follower.after is not None
        by_upstream.setdefault(follower.after, []).append(follower)
    return by_upstream


def _reached_jobs(
    starts: Iterable[str], by_upstream: Mapping[str, list[Job]]
) -> dict[tuple[str, ...], list[Job]]:
    """The lines a chain from `starts` reaches, by the job (command) they run; each notebook's
    followers are visited once, however many paths lead to it."""
    jobs: dict[tuple[str, ...], list[Job]] = {}
    seen = set(starts)
    todo = list(seen)
    while todo:
        for line in by_upstream.get(todo.pop(), ()):
            jobs.setdefault(line.args, []).append(line)
            if line.notebook not in seen:
                seen.add(line.notebook)
                todo.append(line.notebook)
    return jobs


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
    followers, ignored = _written_once(followers, source)
    schedule = Schedule(jobs, followers, ignored)
    _check_followers(schedule, source, analyses)
    return schedule


def _written_once(followers: list[Job], source: str) -> tuple[list[Job], list[str]]:
    """The `after` lines without those repeating an earlier one (a paste), and a sentence for each
    of those: a follower runs once per run of its chain however often it is written, so a repeat
    changes nothing, and refusing it would stop a schedule that ran before."""
    first_line: dict[tuple[str | None, tuple[str, ...]], int] = {}
    kept, ignored = [], []
    for follower in followers:
        earlier = first_line.setdefault((follower.after, follower.args), follower.line)
        if earlier == follower.line:
            kept.append(follower)
        else:
            ignored.append(
                f"{source}, line {follower.line}: `{follower.when} {follower.command}` repeats line "
                f"{earlier}, so it is left out (remove it)"
            )
    return kept, ignored


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
    """Each follower follows a notebook some line runs, and no chain of followers comes back.
    Linear in the lines, like reading them."""
    runs_all = any(j.notebook == "all" for j in schedule.jobs)
    run = {j.notebook for j in [*schedule.jobs, *schedule.followers]}
    if runs_all:
        run |= {*ALL, *(analyses or ())}
    graph = {
        upstream: [f.notebook for f in lines] for upstream, lines in _by_upstream(schedule.followers).items()
    }
    component = _components(graph)
    for follower in schedule.followers:
        written = f"`{follower.when} {follower.command}`"
        assert follower.after is not None
        if component[follower.after] == component[follower.notebook]:
            loop = _cycle(graph, follower.after, follower.notebook)
            raise ScheduleError(
                f"{source}, line {follower.line}: {written} makes a cycle of followers: {' -> '.join(loop)}"
            )
        if follower.after not in run and not (runs_all and analyses is None):
            raise ScheduleError(
                f"{source}, line {follower.line}: no line of the schedule runs {follower.after!r}, "
                f"so `after {follower.after}` would never run (give it a cron time or run it `all`)"
            )


def _components(graph: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each notebook's strongly connected component (Tarjan's algorithm, without recursion): a
    line `after A B` is on a cycle exactly when A and B share one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    component: dict[str, int] = {}
    stack: list[str] = []  # visited, component not known yet
    path: list[tuple[str, Iterator[str]]] = []  # the depth-first path, each with its children left

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        path.append((node, iter(graph.get(node, ()))))

    for root in graph:
        if root in index:
            continue
        visit(root)
        while path:
            node, children = path[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    visit(child)
                elif child not in component:  # on the stack: part of this path's component
                    low[node] = min(low[node], index[child])
                continue
            path.pop()
            if path:
                low[path[-1][0]] = min(low[path[-1][0]], low[node])
            if low[node] == index[node]:
                while (member := stack.pop()) != node:
                    component[member] = index[node]
                component[node] = index[node]
    return component


def _cycle(graph: Mapping[str, Sequence[str]], upstream: str, follower: str) -> list[str]:
    """The notebooks of the shortest chain from `follower` back to `upstream`, after `upstream`."""
    came_from: dict[str, str | None] = {follower: None}
    todo = deque([follower])
    while todo and (notebook := todo.popleft()) != upstream:
        for child in graph.get(notebook, ()):
            if child not in came_from:
                came_from[child] = notebook
                todo.append(child)
    back: list[str] = []
    at: str | None = upstream
    while at is not None:
        back.append(at)
        at = came_from[at]
    return [upstream, *reversed(back)]


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
