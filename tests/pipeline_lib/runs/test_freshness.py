"""Freshness of figures: age, the limit the schedule (or the setting) implies, and the warnings."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline_lib.runs.freshness import (
    Freshness,
    assess,
    human_age,
    human_duration,
    latest_finished,
    notebook_of,
    schedule_window,
)
from pipeline_lib.runs.records import RunError, RunRecord, RunStatus
from pipeline_lib.runs.schedule import parse

UTC = dt.UTC
COMPUTED = dt.datetime(2026, 11, 29, 10, 7, tzinfo=UTC)  # by the 10:05 run of `5 * * * * process`
FIGURES_RUN = "process-20261129T100500Z-3fa9c1"
SHIPPED = parse("*/10 * * * * clean\n5 * * * * process\n")
HOUR = 3600.0


def _run(run_id: str, status: RunStatus, started: dt.datetime, notebook: str = "process") -> RunRecord:
    record = RunRecord(run_id=run_id, notebook=notebook, started_at=started, code_version="git:t", host="h")
    if status != "running":
        record.status = status
        record.ended_at = started + dt.timedelta(minutes=2)
    if status in ("failed", "timed_out"):
        record.error = RunError(
            cell_index=3, exception="ValueError", message="ses out of range: 'abc'\n  traceback line"
        )
    return record


def _assess(now: dt.datetime, **changes: object) -> Freshness:
    arguments: dict = {
        "computed_at": COMPUTED,
        "run_id": FIGURES_RUN,
        "notebook": "process",
        "latest_run": _run(FIGURES_RUN, "succeeded", COMPUTED - dt.timedelta(minutes=2)),
        "jobs": SHIPPED,
        "stale_after": None,
        "now": now,
        "tz": UTC,
    }
    return assess(**{**arguments, **changes})


def test_figures_from_the_latest_run_within_two_periods_are_fresh() -> None:
    fresh = _assess(COMPUTED + dt.timedelta(minutes=3))
    assert fresh.age_seconds == 180 and fresh.age == "3 minutes ago"
    assert fresh.schedule_period_seconds == HOUR and fresh.stale_after_seconds == 2 * HOUR
    assert fresh.stale_after_source == "schedule" and fresh.latest_run_status == "succeeded"
    assert not fresh.stale and fresh.warnings == []


def test_figures_older_than_two_periods_are_stale_and_say_by_how_much() -> None:
    old = _assess(COMPUTED + dt.timedelta(hours=5))
    assert old.stale and old.age == "5 hours ago"
    assert old.warnings == [
        "These figures are 5 hours old; the schedule runs process every hour, so they should be at most "
        "2 hours old."
    ]
    assert not _assess(COMPUTED + dt.timedelta(hours=2)).stale  # the limit itself is still fresh


def test_a_failed_latest_run_is_warned_of_even_when_the_figures_are_young() -> None:
    failed = _run("process-20261129T111500Z-aaaaaa", "failed", dt.datetime(2026, 11, 29, 11, 15, tzinfo=UTC))
    result = _assess(COMPUTED + dt.timedelta(hours=1, minutes=20), latest_run=failed)
    assert not result.stale and result.latest_run_status == "failed"
    assert result.warnings == [
        "The latest process run (process-20261129T111500Z-aaaaaa) failed at 2026-11-29 11:17 UTC: "
        f"ValueError; these figures are from an earlier run ({FIGURES_RUN})."
    ]


def test_only_analysts_get_the_first_line_of_the_error_message() -> None:
    failed = _run("process-20261129T111500Z-aaaaaa", "failed", dt.datetime(2026, 11, 29, 11, 15, tzinfo=UTC))
    result = _assess(COMPUTED + dt.timedelta(hours=1, minutes=20), latest_run=failed, details=True)
    assert "failed at 2026-11-29 11:17 UTC: ValueError: ses out of range: 'abc'; these" in result.warnings[0]
    assert "traceback line" not in result.warnings[0]


def test_a_timed_out_latest_run_is_warned_of_as_timed_out() -> None:
    late = _run("process-20261129T111500Z-bbbbbb", "timed_out", dt.datetime(2026, 11, 29, 11, 15, tzinfo=UTC))
    result = _assess(COMPUTED + dt.timedelta(hours=4), latest_run=late)
    assert result.stale and len(result.warnings) == 2
    assert "(process-20261129T111500Z-bbbbbb) timed out at 2026-11-29 11:17 UTC" in result.warnings[0]
    assert result.warnings[1].startswith("These figures are 4 hours old;")


def test_a_failed_run_that_wrote_the_figures_says_some_may_be_older() -> None:
    failed = _run(FIGURES_RUN, "failed", COMPUTED - dt.timedelta(minutes=2))
    (warning,) = _assess(COMPUTED + dt.timedelta(minutes=5), latest_run=failed).warnings
    assert f"({FIGURES_RUN}) failed" in warning and "some of them may be from earlier runs" in warning


def test_a_failure_the_figures_already_replaced_is_not_warned_of() -> None:
    # A manual run made newer figures after the failed scheduled one.
    earlier = _run("process-20261129T090500Z-cccccc", "failed", dt.datetime(2026, 11, 29, 9, 5, tzinfo=UTC))
    assert _assess(COMPUTED + dt.timedelta(minutes=5), latest_run=earlier).warnings == []


def test_the_all_job_counts_as_a_run_of_process() -> None:
    daily = parse("0 2 * * * all\n")
    result = _assess(COMPUTED + dt.timedelta(hours=30), jobs=daily)
    assert result.schedule_period_seconds == 24 * HOUR and result.stale_after_seconds == 48 * HOUR
    assert not result.stale
    assert (
        "runs process every day, so they should be at most 2 days old"
        in _assess(COMPUTED + dt.timedelta(days=3), jobs=daily).warnings[0]
    )


def test_process_and_all_jobs_together_make_the_period_the_gap_between_any_two_runs() -> None:
    both = parse("5 * * * * process\n35 * * * * all\n")
    assert _assess(COMPUTED, jobs=both).schedule_period_seconds == HOUR / 2


def test_figures_of_a_notebook_not_on_the_schedule_have_no_limit() -> None:
    result = _assess(COMPUTED + dt.timedelta(days=40), jobs=parse("*/10 * * * * clean\n"))
    assert result.schedule_period_seconds is None and result.stale_after_seconds is None
    assert result.stale_after_source is None and not result.stale and result.warnings == []
    assert result.age == "40 days ago"


def test_an_explicit_stale_after_wins_over_the_schedule_and_applies_to_unscheduled_notebooks() -> None:
    three_hours = dt.timedelta(hours=3)
    result = _assess(COMPUTED + dt.timedelta(hours=2, minutes=30), stale_after=dt.timedelta(hours=1))
    assert result.stale and result.stale_after_seconds == HOUR and result.stale_after_source == "setting"
    assert result.warnings == [
        "These figures are 2 hours 30 minutes old; figures older than 1 hour count as out of date here "
        "(WORKBENCH_STALE_AFTER)."
    ]
    unscheduled = _assess(COMPUTED + dt.timedelta(hours=4), jobs=[], stale_after=three_hours, notebook=None)
    assert unscheduled.stale and unscheduled.schedule_period_seconds is None


@pytest.mark.parametrize(
    ("cron", "period_hours"), [("@hourly", 1), ("@daily", 24), ("@midnight", 24), ("@weekly", 24 * 7)]
)
def test_nicknames_imply_their_period(cron: str, period_hours: int) -> None:
    result = _assess(COMPUTED, jobs=parse(f"{cron} process\n"))
    assert result.schedule_period_seconds == period_hours * HOUR
    assert result.stale_after_seconds == 2 * period_hours * HOUR


def test_an_irregular_schedule_counts_two_fire_times_not_twice_the_longest_gap() -> None:
    office_hours = parse("5 9-17 * * 1-5 process\n")
    friday = dt.datetime(2026, 11, 27, 17, 7, tzinfo=UTC)
    period, limit, regular = schedule_window(office_hours, friday, UTC)  # type: ignore[misc]
    # Friday 17:05 -> Monday 09:05 -> Monday 10:05.
    assert period == dt.timedelta(hours=64) and limit == dt.timedelta(hours=65) and not regular
    monday_noon = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    (warning,) = _assess(monday_noon, computed_at=friday, jobs=office_hours).warnings
    assert warning == (
        "These figures are 2 days 18 hours old; by the schedule's runs of process they should be at most "
        "2 days 17 hours old."
    )


def test_cron_times_are_read_in_the_given_zone() -> None:
    # 12:07 UTC is within 9-17 in UTC, but 17:37 in India: after that day's last run there.
    office_hours = parse("5 9-17 * * * process\n")
    noon = dt.datetime(2026, 11, 29, 12, 7, tzinfo=UTC)
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert schedule_window(office_hours, noon, UTC) == (dt.timedelta(hours=1), dt.timedelta(hours=2), True)
    assert schedule_window(office_hours, noon, india) == (
        dt.timedelta(hours=16),
        dt.timedelta(hours=17),
        False,
    )


def test_stored_dates_without_a_zone_are_read_as_utc_and_a_future_time_is_just_now() -> None:
    naive = _assess(COMPUTED + dt.timedelta(seconds=30), computed_at=COMPUTED.replace(tzinfo=None))
    assert naive.computed_at == COMPUTED and naive.age_seconds == 30 and naive.age == "just now"
    assert _assess(COMPUTED - dt.timedelta(minutes=5)).age_seconds == 0


def test_the_run_id_names_its_notebook() -> None:
    assert notebook_of(FIGURES_RUN) == "process"
    assert notebook_of("process-20261129T101500Z") == "process"  # the notebook's own default id
    assert notebook_of("data_quality-x-20261129T101500Z-abcdef") == "data_quality-x"
    assert notebook_of("process-1") is None and notebook_of("manual") is None


def test_the_latest_finished_run_ignores_running_and_skipped_runs_and_other_notebooks() -> None:
    t = COMPUTED
    runs = [
        _run("p1", "succeeded", t),
        _run("p2", "failed", t + dt.timedelta(hours=1)),
        _run("p3", "skipped", t + dt.timedelta(hours=2)),
        _run("p4", "running", t + dt.timedelta(hours=3)),
        _run("c1", "succeeded", t + dt.timedelta(hours=4), notebook="clean"),
    ]
    assert latest_finished(runs, "process").run_id == "p2"  # type: ignore[union-attr]
    assert latest_finished(runs, "nothing") is None


@pytest.mark.parametrize(
    ("seconds", "parts", "words"),
    [
        (0, 1, "0 seconds"),
        (59, 1, "59 seconds"),
        (60, 1, "1 minute"),
        (9000, 1, "2 hours"),
        (9000, 2, "2 hours 30 minutes"),
        (2 * 86_400 + 300, 2, "2 days"),
        (86_400 + 3 * 3600 + 7, 3, "1 day 3 hours"),
        (181, 2, "3 minutes"),
    ],
)
def test_durations_read_as_words(seconds: float, parts: int, words: str) -> None:
    assert human_duration(seconds, parts) == words


def test_ages_read_as_words() -> None:
    assert [human_age(s) for s in (5, 180, 2 * 86_400 + 7)] == ["just now", "3 minutes ago", "2 days ago"]
