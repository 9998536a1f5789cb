"""Run history for analysts: the `runs` records as JSON and pages, with each run's output notebook."""

from __future__ import annotations

import logging
import time
from pathlib import Path as FilePath
from typing import Annotated, get_args

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, Security
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from pipeline_lib.contract.collections import RUNS
from pipeline_lib.runs import records
from pipeline_lib.runs.records import RunRecord, RunStatus
from web_app.deps import DbDep, SettingsDep, current_user, page_user
from web_app.pages import render
from web_app.problems import problem_responses
from web_app.run_notebooks import (
    NOTEBOOK_CSP,
    NotArchived,
    NotebookTooLarge,
    NotebookUnreadable,
    RendersBusy,
    RunNotebookRenders,
    archived_path,
    notice_html,
)
from web_app.security import TokenClaims

router = APIRouter(tags=["runs"])
Analyst = Annotated[TokenClaims, Security(current_user, scopes=["analyst"])]
PageAnalyst = Annotated[TokenClaims, Security(page_user, scopes=["analyst"])]
RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]
STATUSES: tuple[str, ...] = get_args(RunStatus)
# papermill rewrites a notebook in well under this; one cut short and older was left so.
REWRITE_SECONDS = 10
log = logging.getLogger(__name__)


def notebook_renders(request: Request) -> RunNotebookRenders:
    """The app's run notebook pages: rendered, kept, and how many render at once."""
    return request.app.state.run_notebook_renders  # type: ignore[no-any-return]


RendersDep = Annotated[RunNotebookRenders, Depends(notebook_renders)]


async def list_runs(
    db: DbDep, notebook: str | None = None, status: str | None = None, limit: int = 50
) -> list[RunRecord]:
    """Newest first; a record that does not read as a run is left out, not fatal."""
    conditions = [
        (field, "eq", value) for field, value in (("notebook", notebook), ("status", status)) if value
    ]
    return records.load_readable(await db.list_documents(RUNS, conditions, limit=limit, newest_first=True))


async def _run(db: DbDep, run_id: str) -> RunRecord:
    raw = await db.get_document(RUNS, run_id)
    if raw is None:
        raise HTTPException(404, f"No run {run_id!r}; GET /api/v1/runs lists them")
    try:
        return records.load(raw)
    except ValidationError:
        raise HTTPException(404, f"Run {run_id!r} is not in a readable form") from None


@router.get(
    "/api/v1/runs", summary="Run history, newest first", responses=problem_responses(401, 403, 422, 503)
)
async def runs_index(
    user: Analyst,
    db: DbDep,
    notebook: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[RunRecord]:
    return await list_runs(db, notebook, status, limit)


@router.get(
    "/api/v1/runs/{run_id}", summary="One run's record", responses=problem_responses(401, 403, 404, 422, 503)
)
async def run_record(run_id: RunId, user: Analyst, db: DbDep) -> RunRecord:
    return await _run(db, run_id)


@router.get("/runs", response_class=HTMLResponse, include_in_schema=False)
async def runs_page(
    request: Request,
    user: PageAnalyst,
    db: DbDep,
    notebook: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{0,100}$")] = None,
    status: Annotated[str | None, Query(pattern=r"^[a-z_]{0,20}$")] = None,
) -> Response:
    notebook = notebook or None
    status = status if status in STATUSES else None
    runs = await list_runs(db, notebook, status, limit=200)
    return await render(
        request,
        "runs.html",
        {"runs": runs, "notebook": notebook or "", "status": status or "", "statuses": STATUSES},
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
async def run_page(
    request: Request, run_id: RunId, user: PageAnalyst, db: DbDep, settings: SettingsDep
) -> Response:
    run = await _run(db, run_id)
    try:
        archived_path(run.output_path, settings.run_archive)
        missing = None
    except NotArchived as exc:
        missing = str(exc)
    return await render(request, "run.html", {"run": run, "missing": missing})


@router.get("/runs/{run_id}/notebook", response_class=HTMLResponse, include_in_schema=False)
async def run_notebook(
    run_id: RunId, user: PageAnalyst, db: DbDep, settings: SettingsDep, renders: RendersDep
) -> Response:
    run = await _run(db, run_id)
    try:
        path = archived_path(run.output_path, settings.run_archive)
    except NotArchived as exc:
        raise HTTPException(404, str(exc)) from None
    try:
        page = await renders.page(path)
    except NotebookTooLarge as exc:
        return _notice(413, f"{exc} Open it with Jupyter from its path on the run page.")
    except RendersBusy as exc:
        return _notice(503, str(exc), retry_after=2)
    except NotebookUnreadable as exc:
        return _unreadable(run, exc, path)
    return HTMLResponse(page, headers={"Content-Security-Policy": NOTEBOOK_CSP})


def _unreadable(run: RunRecord, exc: NotebookUnreadable, path: FilePath) -> HTMLResponse:
    """A running run's notebook is unreadable for a moment while papermill rewrites it; a finished
    run's stays so, and so does that of a run whose runner died (still "running", its file cut
    short and no longer written)."""
    try:
        being_written = time.time() - path.stat().st_mtime < REWRITE_SECONDS
    except OSError:
        being_written = False
    if run.status == "running" and being_written:
        message = "This run is in progress and its notebook is being written right now: reload in a moment."
        return _notice(503, message, retry_after=1)
    log.warning("run notebook unreadable", extra={"run_id": run.run_id, "error": str(exc)})
    return _notice(404, f"This run's output notebook cannot be shown: {exc}.")


def _notice(status: int, message: str, retry_after: int | None = None) -> HTMLResponse:
    """An answer shown in the notebook's frame on the run page, so a page, not problem JSON."""
    headers = {"Content-Security-Policy": NOTEBOOK_CSP}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return HTMLResponse(notice_html(message), status_code=status, headers=headers)
