"""Results: the latest processed figures, as JSON and as a page, never showing a group under k,
each with how old it is and a warning when it is stale or the run that should renew it failed."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Sequence
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, Security
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from pipeline_lib.process.results import PublicResult, ResultDocument, ResultSummary, suppress
from pipeline_lib.runs import schedule
from pipeline_lib.runs.freshness import Freshness, assess, failed_run_warning, latest_finished, notebook_of
from pipeline_lib.runs.records import RunRecord
from pipeline_lib.views.charts import bar_chart_svg
from web_app.deps import DbDep, SettingsDep, current_user, page_user
from web_app.pages import render
from web_app.problems import problem_responses
from web_app.routes.runs import list_runs
from web_app.security import TokenClaims

log = logging.getLogger(__name__)
router = APIRouter(tags=["results"])
Reader = Annotated[TokenClaims, Security(current_user, scopes=["results:read"])]
PageReader = Annotated[TokenClaims, Security(page_user, scopes=["results:read"])]


# Freshness is a field of each item rather than a wrapper around the list: clients that read
# `list[ResultSummary]` keep working, and each item can be judged on its own (a key that a later
# run no longer writes grows old while the others stay fresh).
class FreshSummary(ResultSummary):
    """An index entry: the result, and how old its figures are."""

    freshness: Freshness


class FreshResult(PublicResult):
    """One result as anyone may see it, and how old its figures are."""

    freshness: Freshness


async def _documents(db: DbDep) -> list[ResultDocument]:
    """Every well-formed result document (a malformed one is skipped, not fatal to the page)."""
    docs = []
    for raw in await db.list_documents("processed", limit=10_000):
        try:
            docs.append(ResultDocument.model_validate(raw))
        except ValidationError:
            continue
    return sorted(docs, key=lambda d: d.key)


def _is_analyst(user: TokenClaims) -> bool:
    return bool({"analyst", "admin"} & user.scopes)


@functools.lru_cache(maxsize=4)
def _parsed_schedule(path: str, mtime_ns: int, size: int) -> tuple[schedule.Job, ...]:
    return tuple(schedule.load(FilePath(path)))


def _schedule(path: FilePath) -> Sequence[schedule.Job]:
    """The schedule's jobs, parsed again only when the file changes. A schedule that cannot be
    read sets no limit (and says so in the log): it must not take the results down with it."""
    try:
        stat = path.stat()
        return _parsed_schedule(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, schedule.ScheduleError) as exc:
        log.warning("schedule unreadable; figures get no staleness limit from it", extra={"error": str(exc)})
        return ()


async def _notebook(db: DbDep, run_id: str) -> str | None:
    """The notebook of a run: from its id if it has the usual form, else from its record."""
    if found := notebook_of(run_id):
        return found
    raw = await db.get_document("runs", run_id)
    return raw.get("notebook") if raw and isinstance(raw.get("notebook"), str) else None


async def _freshness(
    db: DbDep, settings: SettingsDep, documents: Sequence[ResultDocument], *, details: bool
) -> dict[str, Freshness]:
    """Each document's freshness by key; runs are read once per producing run and notebook."""
    jobs, now = _schedule(settings.schedule_file), dt.datetime.now(dt.UTC)
    notebooks: dict[str, str | None] = {}
    latest: dict[str, RunRecord | None] = {}
    found = {}
    for doc in documents:
        if doc.run_id not in notebooks:
            notebooks[doc.run_id] = await _notebook(db, doc.run_id)
        notebook = notebooks[doc.run_id]
        if notebook is not None and notebook not in latest:
            latest[notebook] = latest_finished(await list_runs(db, notebook, limit=50), notebook)
        found[doc.key] = assess(
            computed_at=doc.computed_at,
            run_id=doc.run_id,
            notebook=notebook,
            latest_run=latest.get(notebook) if notebook else None,
            jobs=jobs,
            stale_after=settings.stale_after,
            now=now,
            details=details,
        )
    return found


@router.get("/api/v1/results", summary="Index of result keys", responses=problem_responses(401, 403, 503))
async def results_index(user: Reader, db: DbDep, settings: SettingsDep) -> list[FreshSummary]:
    documents = await _documents(db)
    fresh = await _freshness(db, settings, documents, details=_is_analyst(user))
    return [FreshSummary(**d.model_dump(), freshness=fresh[d.key]) for d in documents]


@router.get(
    "/api/v1/results/{key}",
    summary="One result, groups under k suppressed",
    responses=problem_responses(401, 403, 404, 422, 503, s404="No such result"),
)
async def result(
    key: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")],
    user: Reader,
    db: DbDep,
    settings: SettingsDep,
) -> FreshResult:
    raw = await db.get_document("processed", key)
    if raw is None:
        raise HTTPException(404, f"No result {key!r}; GET /api/v1/results lists them")
    try:
        doc = ResultDocument.model_validate(raw)
    except ValidationError:
        raise HTTPException(404, f"Result {key!r} is not in a readable form") from None
    analyst = _is_analyst(user)
    fresh = await _freshness(db, settings, [doc], details=analyst)
    public = suppress(doc, settings.k_min_group, analyst=analyst)
    return FreshResult(**public.model_dump(), freshness=fresh[doc.key])


# Longer tables (one row per school) are summarised on the page; the API has them whole.
MAX_PAGE_ROWS = 50
MAX_CHART_BARS = 40


def _chart(result: PublicResult) -> str | None:
    """The document's chart, or else its first table's first numeric column by its first column;
    none for a table too long to read as bars."""
    if not result.tables:
        return None
    spec = result.chart
    table = next((t for t in result.tables if spec and t.name == spec.table), result.tables[0])
    if spec and spec.x in table.columns and spec.y in table.columns:
        x, y, title = table.columns.index(spec.x), table.columns.index(spec.y), spec.title or table.title
    else:
        numeric = [
            i
            for i, c in enumerate(table.columns)
            if i > 0 and c != "n" and any(isinstance(r[i], int | float) for r in table.rows)
        ]
        if not numeric:
            return None
        x, y, title = 0, numeric[0], f"{table.title}: {table.columns[numeric[0]]}"
    if len(table.rows) > MAX_CHART_BARS:
        return None
    labels = [str(row[x]) for row in table.rows]
    values = [
        None if flag or row[y] is None else float(row[y])
        for row, flag in zip(table.rows, table.suppressed, strict=True)
    ]
    return bar_chart_svg(labels, values, title)


async def _failed_latest_runs(db: DbDep) -> list[RunRecord]:
    """Each notebook's latest finished run (skipped ones aside), where it failed or timed out."""
    latest: dict[str, RunRecord] = {}
    for run in await list_runs(db, limit=200):
        if run.status in ("succeeded", "failed", "timed_out"):
            latest.setdefault(run.notebook, run)
    return [run for run in latest.values() if run.status != "succeeded"]


@router.get("/results", response_class=HTMLResponse, include_in_schema=False)
async def results_page(request: Request, user: PageReader, db: DbDep, settings: SettingsDep) -> Response:
    k, analyst = settings.k_min_group, _is_analyst(user)
    documents = await _documents(db)
    results = [suppress(d, k, analyst=analyst) for d in documents]
    charts = {r.key: _chart(r) for r in results}
    fresh = await _freshness(db, settings, documents, details=analyst)
    headline = max(fresh.values(), key=lambda f: f.computed_at, default=None)
    # One warning block: the newest figures' own (stale, or their notebook's latest run failed),
    # then any other notebook whose latest run failed (a failed clean leaves new data out).
    others = [r for r in await _failed_latest_runs(db) if headline is None or r.notebook != headline.notebook]
    warnings = [
        *(headline.warnings if headline else []),
        *(failed_run_warning(r, details=analyst) for r in others),
    ]
    failed_ids = [r.run_id for r in others]
    if headline and headline.latest_run_failed and headline.latest_run_id:
        failed_ids.insert(0, headline.latest_run_id)
    return render(
        request,
        "results.html",
        {
            "results": results,
            "charts": charts,
            "k": k,
            "freshness": fresh,
            "headline": headline,
            "warnings": warnings,
            "failed_run_ids": failed_ids,
            "analyst": analyst,
            "voila_url": settings.voila_url,
            "max_rows": MAX_PAGE_ROWS,
        },
    )
