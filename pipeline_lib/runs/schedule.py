"""The schedule file (`schedules/crontab`): cron times, each followed by a `workbench run` job.

    */10 * * * *  clean
    5    * * * *  process -p seed 7

Five cron fields (or a nickname such as `@hourly`), then the notebook (or `all`) and its
options exactly as `workbench run` takes them. `#` starts a comment. A line that is not valid is
an error naming the file and line, never skipped silently.
"""

from __future__ import annotations

import datetime as dt
import shlex
from dataclasses import dataclass
from pathlib import Path

from croniter import croniter

# `workbench run all`, and a schedule's `all` job, run these notebooks in order (stopping at the
# first that does not succeed).
ALL = ("clean", "process")

NICKNAMES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Job:
    line: int
    cron: str
    args: tuple[str, ...]

    @property
    def notebook(self) -> str:
        return self.args[0]

    @property
    def command(self) -> str:
        return shlex.join(self.args)

    def next_times(self, after: dt.datetime, count: int = 1) -> list[dt.datetime]:
        times = croniter(self.cron, after)
        return [times.get_next(dt.datetime) for _ in range(count)]


def parse(text: str, source: str = "the schedule") -> list[Job]:
    jobs = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ScheduleError(f"{source}, line {number}: {exc}: {raw!r}") from None
        width = 1 if words[0].startswith("@") else 5
        cron, args = " ".join(words[:width]), tuple(words[width:])
        if width == 1 and words[0] not in NICKNAMES:
            raise ScheduleError(
                f"{source}, line {number}: unknown nickname {words[0]!r} "
                f"(use five cron fields or one of {', '.join(sorted(NICKNAMES))}): {raw!r}"
            )
        if len(words) < width or not croniter.is_valid(cron):
            raise ScheduleError(
                f"{source}, line {number}: {cron!r} is not a valid cron time "
                f"(minute hour day-of-month month day-of-week): {raw!r}"
            )
        if not args:
            raise ScheduleError(f"{source}, line {number}: no job after the cron time: {raw!r}")
        if args[0].startswith("-"):
            raise ScheduleError(f"{source}, line {number}: the job must start with a notebook name: {raw!r}")
        jobs.append(Job(number, cron, args))
    return jobs


def load(path: Path) -> list[Job]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScheduleError(f"cannot read the schedule {path}: {exc.strerror}") from None
    return parse(text, str(path))
