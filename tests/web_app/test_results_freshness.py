"""How old the results are, on `/results` and in `/api/v1/results`: the age, the limit the
schedule implies, and a warning when they are stale or the latest run of their notebook failed."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pipeline_lib.process.results import ResultDocument, ResultTable
from pipeline_lib.runs import records
from pipeline_lib.runs.records import RunError, RunRecord, RunStatus
from tests.web_app.conftest import PASSWORD, WebStack
from web_app.routes.result_data import schedule_jobs as _schedule

SCHEDULE = "*/10 * * * * clean\n5 * * * * process\n"


@pytest.fixture
def web_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, object]:
    """The app reads a schedule of its own (clean every 10 minutes, process hourly)."""
    schedule = tmp_path / "crontab"
    schedule.write_text(SCHEDULE)
    return {"schedule_file": schedule, **getattr(request, "param", {})}


@pytest.fixture
def now() -> dt.datetime:
    """The test's start: documents and runs are dated back from it."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _document(stack: WebStack, key: str, run_id: str, computed_at: dt.datetime) -> None:
    doc = ResultDocument(
        key=key,
        title=f"Result {key}",
        analysis="descriptives",
        run_id=run_id,
        computed_at=computed_at,
        n_input=100,
        tables=[ResultTable(name="t", title="T", columns=["g", "n"], rows=[["a", 100]], label_columns=["g"])],
    )
    stack.db.put_document("processed", key, doc.model_dump(mode="json"))


def _run(stack: WebStack, run_id: str, notebook: str, status: RunStatus, started: dt.datetime) -> None:
    record = RunRecord(run_id=run_id, notebook=notebook, started_at=started, code_version="git:t", host="h")
    record.status, record.ended_at = status, started + dt.timedelta(minutes=2)
    if status in ("failed", "timed_out"):
        record.error = RunError(
            cell_index=4, exception="AnalysisError", message="school 1224: 3 students\nmore"
        )
    records.save(stack.db, record)


@contextmanager
def _signed_in(stack: WebStack, user: str) -> Iterator[httpx.Client]:
    with stack.client() as http:
        csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        http.post("/login", data={"username": user, "password": PASSWORD, "csrf": csrf})
        yield http


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


GOOD = "process-20261129T100500Z-aaaaaa"
BAD = "process-20261129T110500Z-bbbbbb"


def test_the_results_api_gives_each_result_its_age_and_the_limit_of_its_schedule(
    stack: WebStack, now: dt.datetime
) -> None:
    _document(stack, "a", GOOD, now - dt.timedelta(minutes=3))
    _run(stack, GOOD, "process", "succeeded", now - dt.timedelta(minutes=5))
    with stack.client(headers=stack.auth("reader")) as http:
        (summary,) = http.get("/api/v1/results").json()
        one = http.get("/api/v1/results/a").json()
    fresh = summary["freshness"]
    assert 180 <= fresh["age_seconds"] < 240 and fresh["age"] == "3 minutes ago"
    assert fresh["notebook"] == "process" and fresh["run_id"] == GOOD
    assert fresh["schedule_period_seconds"] == 3600 and fresh["stale_after_seconds"] == 7200
    assert fresh["stale_after_source"] == "schedule" and fresh["latest_run_status"] == "succeeded"
    assert fresh["stale"] is False and fresh["warnings"] == []
    assert one["freshness"]["stale_after_seconds"] == 7200 and one["tables"][0]["rows"] == [["a", 100]]


def test_stale_figures_and_a_failed_latest_run_are_warned_of_with_details_for_analysts(
    stack: WebStack, now: dt.datetime
) -> None:
    _document(stack, "a", GOOD, now - dt.timedelta(hours=5))
    _run(stack, GOOD, "process", "succeeded", now - dt.timedelta(hours=5, minutes=2))
    _run(stack, BAD, "process", "failed", now - dt.timedelta(hours=1))
    with stack.client() as http:
        public = http.get("/api/v1/results/a", headers=stack.auth("reader")).json()["freshness"]
        analyst = http.get("/api/v1/results", headers=stack.auth("analyst")).json()[0]["freshness"]
    failed = f"The latest process run ({BAD}) failed at {_when(now - dt.timedelta(minutes=58))}"
    assert public["stale"] and public["latest_run_failed"] and public["latest_run_id"] == BAD
    assert public["warnings"] == [
        f"{failed}: AnalysisError; these figures are from an earlier run ({GOOD}).",
        "These figures are 5 hours old; the schedule runs process every hour, so they should be at most "
        "2 hours old.",
    ]
    assert analyst["warnings"][0] == f"{failed}: AnalysisError: school 1224: 3 students; these figures are " \
        f"from an earlier run ({GOOD})."  # fmt: skip


def test_the_results_page_says_how_old_the_figures_are_and_warns_in_one_block(
    stack: WebStack, now: dt.datetime
) -> None:
    _document(stack, "a", GOOD, now - dt.timedelta(hours=5))
    _run(stack, GOOD, "process", "succeeded", now - dt.timedelta(hours=5, minutes=2))
    _run(stack, BAD, "process", "timed_out", now - dt.timedelta(hours=1))
    _run(stack, "clean-20261129T110000Z-cccccc", "clean", "failed", now - dt.timedelta(minutes=30))
    with _signed_in(stack, "reader") as http:
        page = http.get("/results").text
    with _signed_in(stack, "analyst") as http:
        analyst_page = http.get("/results").text
    computed = _when(now - dt.timedelta(hours=5))
    assert f"Figures computed <strong>5 hours ago</strong>\n  ({computed}) by run <code>{GOOD}" in page
    assert page.count('class="banner"') == 1 and "These figures may be out of date." in page
    assert f"The latest process run ({BAD}) timed out at" in page
    assert "These figures are 5 hours old; the schedule runs process every hour" in page
    # A failed clean is said too (new submissions are not in the figures), once.
    assert page.count("The latest clean run (clean-20261129T110000Z-cccccc) failed at") == 1
    assert "school 1224" not in page and "/runs/" not in page
    assert "school 1224: 3 students" in analyst_page and f'<a href="/runs/{BAD}">' in analyst_page
    assert 'href="/runs/clean-20261129T110000Z-cccccc"' in analyst_page
    assert '<strong class="stale-tag">Out of date.</strong>' in page  # on the result itself too


def test_fresh_figures_from_a_succeeding_schedule_show_no_warning(stack: WebStack, now: dt.datetime) -> None:
    _document(stack, "a", GOOD, now - dt.timedelta(minutes=40))
    replaced = "process-20261129T090500Z-dddddd"  # failed, but newer figures have come since
    _run(stack, replaced, "process", "failed", now - dt.timedelta(hours=2))
    _run(stack, GOOD, "process", "succeeded", now - dt.timedelta(minutes=42))
    with _signed_in(stack, "reader") as http:
        page = http.get("/results").text
    assert "Figures computed <strong>40 minutes ago</strong>" in page
    assert 'class="banner"' not in page and "Out of date" not in page


@pytest.mark.parametrize("web_settings", [{"stale_after": 60}], indirect=True)
def test_an_explicit_stale_after_is_the_limit(stack: WebStack, now: dt.datetime) -> None:
    # An id without a timestamp: the run's record names the notebook.
    _document(stack, "a", "manual-7", now - dt.timedelta(minutes=3))
    _run(stack, "manual-7", "adhoc", "succeeded", now - dt.timedelta(minutes=5))
    with stack.client(headers=stack.auth("reader")) as http:
        fresh = http.get("/api/v1/results/a").json()["freshness"]
    assert fresh["notebook"] == "adhoc" and fresh["schedule_period_seconds"] is None
    assert fresh["stale"] and fresh["stale_after_seconds"] == 60 and fresh["stale_after_source"] == "setting"
    assert fresh["warnings"] == [
        "These figures are 3 minutes old; figures older than 1 minute count as out of date here "
        "(WORKBENCH_STALE_AFTER)."
    ]


def test_figures_of_a_notebook_off_the_schedule_are_never_stale(stack: WebStack, now: dt.datetime) -> None:
    _document(stack, "a", "adhoc-20260101T000000Z-eeeeee", now - dt.timedelta(days=40))
    with stack.client(headers=stack.auth("reader")) as http:
        fresh = http.get("/api/v1/results/a").json()["freshness"]
    assert fresh["notebook"] == "adhoc" and fresh["latest_run_id"] is None
    assert fresh["stale_after_seconds"] is None and not fresh["stale"] and fresh["warnings"] == []
    assert fresh["age"] == "40 days ago"


def test_the_schedule_is_read_again_only_when_it_changes_and_a_broken_one_sets_no_limit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crontab"
    path.write_text("5 * * * * process\n")
    first = _schedule(path)
    assert [j.cron for j in first] == ["5 * * * *"] and _schedule(path) is first  # cached
    path.write_text("*/15 * * * * process\n")
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert [j.cron for j in _schedule(path)] == ["*/15 * * * *"]
    path.write_text("not a schedule\n")
    assert list(_schedule(path)) == [] and list(_schedule(tmp_path / "missing")) == []
