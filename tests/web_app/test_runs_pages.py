"""Run history: `/api/v1/runs` and the `/runs` pages for analysts, with each run's notebook rendered."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import nbformat

from pipeline_lib.runs.records import RunError, RunRecord
from tests.web_app.conftest import PASSWORD, WebStack

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


# What a notebook's output could hold besides <script>: each must be gone from the served page.
HOSTILE_HTML = (
    '<img src="x" onerror="window.stolen = 2">'
    '<a href="javascript:window.stolen = 3">click</a>'
    '<a href="data:text/html,<script>window.stolen = 4</script>">data link</a>'
    '<iframe src="https://evil.example/"></iframe>'
    '<form action="https://evil.example/"><input name="password"></form>'
    '<svg onload="window.stolen = 5"></svg>'
    '<div onclick="window.stolen = 6" class="kept">a table follows</div>'
    "<table><tr><td>school 17</td></tr></table>"
    '<img alt="plot" src="data:image/png;base64,iVBORw0KGgo=">'
)


def _archived_notebook(folder: Path, name: str) -> Path:
    """An executed notebook as papermill leaves it: a failing cell, and an output that tries a script."""
    notebook = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("print('read 120 records')", execution_count=1)
    ok.outputs = [nbformat.v4.new_output("stream", name="stdout", text="read 120 records\n")]
    sneaky = nbformat.v4.new_code_cell("display(HTML(...))", execution_count=2)
    sneaky.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": "<script>window.stolen = 1</script>"}),
        nbformat.v4.new_output("display_data", data={"text/html": HOSTILE_HTML}),
    ]
    bad = nbformat.v4.new_code_cell("raise ValueError('ses out of range')", execution_count=3)
    bad.outputs = [
        nbformat.v4.new_output("error", ename="ValueError", evalue="ses out of range", traceback=[])
    ]
    notebook.cells = [ok, sneaky, bad]
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def _record(run_id: str, notebook: str, status: str, minutes: int, output: Path | None = None) -> dict:
    started = T0 + dt.timedelta(minutes=minutes)
    record = RunRecord(
        run_id=run_id,
        notebook=notebook,
        parameters={"batch_size": 500},
        started_at=started,
        code_version="git:abc",
        host="box",
        output_path=str(output) if output else None,
        counts={"records_in": 120, "cleaned": 100},
    )
    if status != "running":
        record.finish(status)  # type: ignore[arg-type]
        record.ended_at = started + dt.timedelta(seconds=42)
        record.duration_seconds = 42.0
    if status == "failed":
        record.error = RunError(
            cell_index=2, execution_count=3, exception="ValueError", message="ses out of range"
        )
    return record.model_dump()


def _seed(stack: WebStack) -> None:
    archive = stack.settings.run_archive / "2026" / "11" / "01"
    failed_nb = _archived_notebook(archive, "clean-2-clean.ipynb")
    outside = _archived_notebook(stack.settings.data_dir / "elsewhere", "x.ipynb")
    for doc in (
        _record("clean-1", "clean", "succeeded", 0),
        _record("process-1", "process", "succeeded", 5) | {"after_run_id": "clean-1"},
        _record("clean-2", "clean", "failed", 10, failed_nb),
        _record("clean-3", "clean", "skipped", 11),
        _record("clean-4", "clean", "running", 20, outside),
    ):
        stack.db.put_document("runs", doc["run_id"], doc)


@contextmanager
def _signed_in(stack: WebStack, user: str) -> Iterator[httpx.Client]:
    with stack.client() as http:
        csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        response = http.post("/login", data={"username": user, "password": PASSWORD, "csrf": csrf})
        assert response.status_code == 303
        yield http


def test_the_runs_api_is_for_analysts_and_filters_by_notebook_and_status(stack: WebStack) -> None:
    _seed(stack)
    with stack.client() as http:
        assert http.get("/api/v1/runs").status_code == 401
        assert http.get("/api/v1/runs", headers=stack.auth("reader")).status_code == 403
        analyst = stack.auth("analyst")
        runs = http.get("/api/v1/runs", headers=analyst).json()
        assert [r["run_id"] for r in runs] == ["clean-4", "clean-3", "clean-2", "process-1", "clean-1"]
        failed = http.get("/api/v1/runs", params={"status": "failed"}, headers=analyst).json()
        assert [(r["run_id"], r["error"]["message"]) for r in failed] == [("clean-2", "ses out of range")]
        process = http.get("/api/v1/runs", params={"notebook": "process", "limit": 1}, headers=analyst).json()
        assert [r["run_id"] for r in process] == ["process-1"]
        assert http.get("/api/v1/runs", params={"status": "exploded"}, headers=analyst).status_code == 422
        one = http.get("/api/v1/runs/clean-2", headers=analyst).json()
        assert one["status"] == "failed" and one["counts"] == {"records_in": 120, "cleaned": 100}
        assert http.get("/api/v1/runs/nope", headers=analyst).status_code == 404


def test_the_runs_page_lists_and_filters_runs(stack: WebStack) -> None:
    _seed(stack)
    with stack.client() as anonymous:
        assert anonymous.get("/runs").headers["location"] == "/login?next=/runs"
    with _signed_in(stack, "reader") as reader:
        assert reader.get("/runs").status_code == 403
    with _signed_in(stack, "analyst") as http:
        page = http.get("/runs").text
        assert page.count('href="/runs/') == 5 and page.count('class="status status-succeeded"') == 2
        assert "42.0 s" in page and "records in 120" in page
        filtered = http.get("/runs", params={"notebook": "clean", "status": "failed"}).text
        assert filtered.count('href="/runs/') == 1 and "clean-2" in filtered


def test_a_run_page_shows_the_error_and_the_sandboxed_output_notebook(stack: WebStack) -> None:
    _seed(stack)
    with _signed_in(stack, "analyst") as http:
        page = http.get("/runs/clean-2").text
        assert "ValueError in cell 2" in page and "ses out of range" in page
        assert '<iframe class="notebook"' in page and 'src="/runs/clean-2/notebook"' in page
        notebook = http.get("/runs/clean-2/notebook")
        assert notebook.status_code == 200
        policy = notebook.headers["content-security-policy"]
        assert policy.startswith("sandbox;") and "script-src" not in policy and "default-src 'none'" in policy
        assert "read 120 records" in notebook.text and "ses out of range" in notebook.text
        hostile = ("<script", "stolen", "onerror", "javascript:", "<iframe", "evil.example", "<form", "<svg")
        for gone in hostile:
            assert gone not in notebook.text, gone
        assert 'class="kept"' in notebook.text and "<td>school 17</td>" in notebook.text
        assert 'src="data:image/png;base64,iVBORw0KGgo="' in notebook.text
        # A notebook stored outside the run archive is never served.
        assert "outside this server" in http.get("/runs/clean-4").text
        assert http.get("/runs/clean-4/notebook").status_code == 404
        assert http.get("/runs/clean-1/notebook").status_code == 404
        # A run started by another's success links to it; one started on its own says nothing.
        assert '<a href="/runs/clean-1"><code>clean-1</code></a>' in http.get("/runs/process-1").text
        assert "After run" not in http.get("/runs/clean-1").text


def test_the_results_page_says_when_the_latest_run_failed(stack: WebStack) -> None:
    _seed(stack)
    with _signed_in(stack, "reader") as http:
        page = http.get("/results").text
    # clean-4 is still running and clean-3 was skipped: clean-2 is the latest finished clean.
    assert "The latest clean run" in page and "clean-2" in page and "failed at 2026-11-01 08:10 UTC" in page
    assert "The latest process run" not in page
