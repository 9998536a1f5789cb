"""How old a set of figures is, and whether a person should be warned: stale by the schedule (or by
`WORKBENCH_STALE_AFTER`), or the latest run of the notebook that made them did not succeed.

Pure: the caller reads the documents, the run records and the schedule and passes them in, with
`now`; the web app and the dashboards show the same `Freshness`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Literal, TypeGuard

from croniter import croniter
from pydantic import BaseModel, Field

from pipeline_lib.runs.records import RunRecord, RunStatus
from pipeline_lib.runs.schedule import ALL, Job

# Schedule jobs that run more than one notebook, in order.
JOB_NOTEBOOKS: dict[str, tuple[str, ...]] = {"all": ALL}
# Finished runs that say something about the figures: a skipped run ran nothing.
JUDGED: tuple[RunStatus, ...] = ("succeeded", "failed", "timed_out")
_RUN_ID = re.compile(r"^(?P<notebook>.+?)-\d{8}T\d{6}Z(?:-|$)")
_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))
MAX_ERROR_CHARS = 200


class Freshness(BaseModel):
    """How old figures are and what a reader should be warned of."""

    computed_at: dt.datetime
    run_id: str = Field(description="the run that computed the figures")
    notebook: str | None = Field(description="the notebook that run executed; null if unknown")
    age_seconds: int = Field(ge=0, description="whole seconds from computed_at to now (0 if in the future)")
    age: str = Field(description='for people: "3 minutes ago", "2 days ago"')
    schedule_period_seconds: float | None = Field(
        description="the gap between scheduled runs of the notebook when the figures were computed; "
        "null if it is not on the schedule"
    )
    stale_after_seconds: float | None = Field(description="figures older than this are stale; null: no limit")
    stale_after_source: Literal["setting", "schedule"] | None = Field(
        description="where the limit comes from: WORKBENCH_STALE_AFTER, or two periods of the schedule"
    )
    latest_run_id: str | None = Field(description="the notebook's latest finished run (skipped ones aside)")
    latest_run_status: RunStatus | None
    latest_run_failed: bool = Field(
        description="the latest run failed or timed out, and the figures are not newer than it"
    )
    stale: bool = Field(description="older than stale_after_seconds")
    warnings: list[str] = Field(description="sentences for people; empty when all is well")


def notebook_of(run_id: str) -> str | None:
    """The notebook a run id names (`process-20261129T101500Z-3fa9c1` -> `process`), if it has
    the form `records.new_run_id` (or a notebook's own default, without the suffix) gives it."""
    match = _RUN_ID.match(run_id)
    return match["notebook"] if match else None


def latest_finished(runs: Iterable[RunRecord], notebook: str) -> RunRecord | None:
    """The notebook's newest run that succeeded, failed or timed out."""
    judged = [r for r in runs if r.notebook == notebook and r.status in JUDGED]
    return max(judged, key=lambda r: r.started_at, default=None)


def human_duration(seconds: float, parts: int = 1) -> str:
    """`9000, 1` -> "2 hours"; `9000, 2` -> "2 hours 30 minutes" (rounded down; seconds only
    under a minute; parts after a zero one left out)."""
    left, words = max(int(seconds), 0), list[str]()
    for name, size in _UNITS:
        if words and name == "second":
            break  # "3 minutes", not "3 minutes 1 second"
        amount, left = divmod(left, size)
        if amount:
            words.append(f"{amount} {name}{'' if amount == 1 else 's'}")
        if words and (len(words) == parts or not amount):
            break
    return " ".join(words) or "0 seconds"


def human_age(seconds: float) -> str:
    return "just now" if seconds < 60 else f"{human_duration(seconds)} ago"


def _every(seconds: float) -> str:
    words = human_duration(seconds, parts=2)
    return f"every {words[2:]}" if words.startswith("1 ") and " " not in words[2:] else f"every {words}"


def _utc(moment: dt.datetime) -> dt.datetime:
    # Stored dates come back without a zone; they were written in UTC.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def scheduled_jobs(jobs: Sequence[Job], notebook: str | None) -> list[Job]:
    """The jobs that run `notebook`: its own, and `all` for the notebooks `all` runs."""
    if notebook is None:
        return []
    return [j for j in jobs if j.notebook == notebook or notebook in JOB_NOTEBOOKS.get(j.notebook, ())]


def schedule_window(
    jobs: Sequence[Job], computed_at: dt.datetime, tz: dt.tzinfo | None = None
) -> tuple[dt.timedelta, dt.timedelta, bool] | None:
    """(period, two periods, regular) for figures computed at `computed_at` by these jobs, or None
    without jobs. Cron times are read in `tz` (default: this machine's zone, as the scheduler does).

    Counted in fire times, not as one fixed gap: from f0, the last fire time at or before
    `computed_at` (the run that made the figures), two periods reach f2, the second fire time
    after it; by then two scheduled runs have had the chance to replace the figures. For a
    regular schedule that is exactly twice the gap; for an irregular one ("hourly 9-17 on
    weekdays") figures from Friday 17:05 stay fresh over the weekend until Monday 10:05 instead of
    being flagged at 19:05, and are flagged early on Monday rather than after the longest gap
    (64 hours) twice over. The period reported is f0 -> f1; `regular` says whether f1 -> f2 is
    the same, i.e. whether "every <period>" describes the schedule."""
    if not jobs:
        return None
    start = computed_at.astimezone(tz) + dt.timedelta(seconds=1)  # a fire time at computed_at counts
    previous = [croniter(j.cron, start).get_prev(dt.datetime) for j in jobs]
    f0 = max(previous)
    upcoming = sorted({t for j, p in zip(jobs, previous, strict=True) for t in j.next_times(p, 2) if t > f0})
    f1, f2 = upcoming[:2]
    return f1 - f0, f2 - f0, (f2 - f1) == (f1 - f0)


def _moment(run: RunRecord) -> dt.datetime:
    return _utc(run.ended_at or run.started_at)


def _why(run: RunRecord, details: bool) -> str:
    """The first line of the run's error: exception name and, with `details`, its message (which
    may quote data, so for analysts only)."""
    message = _first_line(run.error.message if run.error else run.note) if details else ""
    name = run.error.exception if run.error else ""
    text = ": ".join(part for part in (name, message) if part)
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "\u2026"
    return f": {text}" if text else ""


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def failed_run_warning(run: RunRecord, *, figures_run_id: str | None = None, details: bool = False) -> str:
    """A sentence about a run that failed or timed out, and what it means for the figures."""
    what = "timed out" if run.status == "timed_out" else "failed"
    head = f"The latest {run.notebook} run ({run.run_id}) {what} at {_moment(run):%Y-%m-%d %H:%M} UTC"
    if figures_run_id is None:
        tail = "figures that depend on it may be out of date"
    elif figures_run_id == run.run_id:
        tail = "it computed these figures before it stopped, so some of them may be from earlier runs"
    else:
        tail = f"these figures are from an earlier run ({figures_run_id})"
    return f"{head}{_why(run, details)}; {tail}."


def _failed_since(run: RunRecord | None, run_id: str, computed_at: dt.datetime) -> TypeGuard[RunRecord]:
    """The run failed or timed out, and it made the figures or ended after them (a failure the
    figures already replaced says nothing about them)."""
    return (
        run is not None
        and run.status in ("failed", "timed_out")
        and (run.run_id == run_id or _moment(run) > computed_at)
    )


def assess(
    *,
    computed_at: dt.datetime,
    run_id: str,
    notebook: str | None,
    latest_run: RunRecord | None,
    jobs: Sequence[Job],
    stale_after: dt.timedelta | None,
    now: dt.datetime,
    tz: dt.tzinfo | None = None,
    details: bool = False,
) -> Freshness:
    """The freshness of figures computed at `computed_at` by run `run_id` of `notebook`, given
    that notebook's latest finished run (`latest_finished`) and the schedule's jobs.

    The limit is `stale_after` if set, else two periods of the schedule (`schedule_window`),
    else none. A failed or timed-out latest run is warned of unless the figures are newer than
    it; `details` adds the first line of its error message (analysts only)."""
    computed_at, now = _utc(computed_at), _utc(now)
    age = max(int((now - computed_at).total_seconds()), 0)
    window = schedule_window(scheduled_jobs(jobs, notebook), computed_at, tz)
    if stale_after is not None:
        limit, source = stale_after, "setting"
    elif window is not None:
        limit, source = window[1], "schedule"
    else:
        limit, source = None, None
    stale = limit is not None and age > limit.total_seconds()

    warnings: list[str] = []
    if failed := _failed_since(latest_run, run_id, computed_at):
        warnings.append(failed_run_warning(latest_run, figures_run_id=run_id, details=details))
    if stale and limit is not None:
        old = f"These figures are {human_duration(age, 2)} old"
        at_most = human_duration(limit.total_seconds(), 2)
        if source == "setting":
            why = f"figures older than {at_most} count as out of date here (WORKBENCH_STALE_AFTER)"
        elif window is not None and window[2]:
            every = _every(window[0].total_seconds())
            why = f"the schedule runs {notebook} {every}, so they should be at most {at_most} old"
        else:
            why = f"by the schedule's runs of {notebook} they should be at most {at_most} old"
        warnings.append(f"{old}; {why}.")

    return Freshness(
        computed_at=computed_at,
        run_id=run_id,
        notebook=notebook,
        age_seconds=age,
        age=human_age(age),
        schedule_period_seconds=window[0].total_seconds() if window else None,
        stale_after_seconds=limit.total_seconds() if limit is not None else None,
        stale_after_source=source,
        latest_run_id=latest_run.run_id if latest_run else None,
        latest_run_status=latest_run.status if latest_run else None,
        latest_run_failed=failed,
        stale=stale,
        warnings=warnings,
    )
