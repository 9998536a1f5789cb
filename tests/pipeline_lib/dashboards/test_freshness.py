"""Every dashboard opens with how old its figures are, and warns when they are stale or the
latest run of the notebook that made them failed: the library through a real db-api, and one
notebook run headlessly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import nbformat
import pytest

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.dashboards import overview, page, quality
from pipeline_lib.process.quality_documents import quality_documents
from pipeline_lib.process.results import ResultDocument
from pipeline_lib.runs import records
from pipeline_lib.runs.records import RunError, RunRecord, RunStatus
from pipeline_lib.settings import Settings
from tests.pipeline_lib.dashboards.conftest import DASHBOARDS, NAMES, execute, html_outputs

NOW = dt.datetime(2026, 11, 29, 15, 0, tzinfo=dt.UTC)
GOOD = "process-20261129T100500Z-aaaaaa"
BAD = "process-20261129T140500Z-bbbbbb"


def _settings(tmp_path: Path, **changes: object) -> Settings:
    schedule = tmp_path / "crontab"
    schedule.write_text("*/10 * * * * clean\n5 * * * * process\n")
    return Settings(data_dir=tmp_path / "var", schedule_file=schedule, **changes)  # type: ignore[arg-type]


def _document(client: DbApiClient, run_id: str, computed_at: dt.datetime) -> None:
    doc = ResultDocument(
        key=overview.OVERALL, title="Overall", analysis="descriptives", run_id=run_id,
        computed_at=computed_at, n_input=0, status="failed", error="not enough students",
    )  # fmt: skip
    client.put_document("processed", doc.key, doc.model_dump(mode="json"))


def _run(
    client: DbApiClient, run_id: str, status: RunStatus, started: dt.datetime, notebook: str = "process"
) -> None:
    record = RunRecord(run_id=run_id, notebook=notebook, started_at=started, code_version="git:t", host="h")
    record.status, record.ended_at = status, started + dt.timedelta(minutes=2)
    if status != "succeeded":
        record.error = RunError(
            cell_index=4, exception="AnalysisError", message="school 1224 has 3 <students>"
        )
    records.save(client, record)


def test_the_opening_says_how_old_the_figures_are_and_warns_of_a_failed_run_and_staleness(
    sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    _document(sqlite_client, GOOD, dt.datetime(2026, 11, 29, 10, 7, tzinfo=dt.UTC))
    _run(sqlite_client, GOOD, "succeeded", dt.datetime(2026, 11, 29, 10, 5, tzinfo=dt.UTC))
    _run(sqlite_client, BAD, "failed", dt.datetime(2026, 11, 29, 14, 5, tzinfo=dt.UTC))
    results = overview.load(sqlite_client, 5)
    results.freshness = page.freshness(sqlite_client, results, _settings(tmp_path), NOW)
    html = page.opening(results)
    assert (
        f"Figures computed <strong>4 hours ago</strong> (2026-11-29 10:07 UTC) by run <code>{GOOD}</code>"
        in html
    )
    assert '<div class="wb-notice wb-warning" role="status"><strong>These figures may be out of date.' in html
    assert (
        f"<li>The latest process run ({BAD}) failed at 2026-11-29 14:07 UTC: AnalysisError; these figures "
        f"are from an earlier run ({GOOD}).</li>"
    ) in html
    assert "<li>These figures are 4 hours 53 minutes old; the schedule runs process every hour" in html
    assert "school 1224" not in html  # the dashboards are public: the exception, not its message


def test_fresh_figures_get_the_line_and_no_warning(sqlite_client: DbApiClient, tmp_path: Path) -> None:
    _document(sqlite_client, GOOD, NOW - dt.timedelta(minutes=20))
    _run(sqlite_client, GOOD, "succeeded", NOW - dt.timedelta(minutes=22))
    results = overview.load(sqlite_client, 5)
    fresh = page.freshness(sqlite_client, results, _settings(tmp_path), NOW)
    assert fresh is not None and fresh.age == "20 minutes ago" and fresh.stale_after_seconds == 7200
    results.freshness = fresh
    assert "Figures computed <strong>20 minutes ago</strong>" in page.opening(results)
    assert "out of date" not in page.opening(results)


def test_a_run_id_without_a_timestamp_is_looked_up_and_stale_after_applies(
    sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    _document(sqlite_client, "manual-7", NOW - dt.timedelta(hours=2))
    _run(sqlite_client, "manual-7", "timed_out", NOW - dt.timedelta(hours=2, minutes=3), notebook="adhoc")
    results = overview.load(sqlite_client, 5)
    fresh = page.freshness(sqlite_client, results, _settings(tmp_path, stale_after=3600), NOW)
    assert fresh is not None and fresh.notebook == "adhoc" and fresh.stale
    assert fresh.warnings[0].startswith("The latest adhoc run (manual-7) timed out at")
    assert "count as out of date here (WORKBENCH_STALE_AFTER)" in fresh.warnings[1]


def test_a_page_without_figures_has_no_freshness(sqlite_client: DbApiClient, tmp_path: Path) -> None:
    _run(sqlite_client, BAD, "failed", NOW - dt.timedelta(hours=1))
    data = quality.load(sqlite_client, 5)  # runs, but no figures
    assert page.freshness(sqlite_client, data, _settings(tmp_path), NOW) is None
    assert "Figures computed" not in page.opening(data)


def test_every_dashboard_opens_with_the_shared_opening() -> None:
    """The freshness line is drawn by `page.opening` from what `page.load` read: each notebook
    must call both, so no dashboard goes without it."""
    for name in NAMES:
        code = "\n".join(
            c.source
            for c in nbformat.read(DASHBOARDS / f"{name}.ipynb", as_version=4).cells
            if c.cell_type == "code"
        )
        assert "page.load(" in code and "page.show(page.opening(" in code, name


def test_a_dashboard_notebook_shows_the_warning(
    kernel_env: DbApiClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime.now(dt.UTC)
    monkeypatch.setenv("WORKBENCH_SCHEDULE_FILE", str(_settings(tmp_path).schedule_file))
    stamp = {"run_id": GOOD, "computed_at": now - dt.timedelta(hours=6)}
    for doc in quality_documents(kernel_env, **stamp):
        kernel_env.put_document("processed", doc.key, doc.model_dump(mode="json"))
    _run(kernel_env, GOOD, "succeeded", now - dt.timedelta(hours=6, minutes=2))
    _run(kernel_env, BAD, "failed", now - dt.timedelta(minutes=50))
    html = html_outputs(execute("data_quality"))
    assert "Figures computed <strong>6 hours ago</strong>" in html and f"by run <code>{GOOD}</code>" in html
    assert "These figures may be out of date." in html
    assert f"The latest process run ({BAD}) failed at" in html
    assert "These figures are 6 hours old; the schedule runs process every hour" in html
