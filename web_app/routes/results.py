"""Results: the latest processed figures, as JSON and as a page, never showing a group under k."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, Security
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from pipeline_lib.results import PublicResult, ResultDocument, ResultSummary, suppress
from pipeline_lib.runs.records import RunRecord
from web_app.charts import bar_chart_svg
from web_app.deps import DbDep, SettingsDep, current_user, page_user
from web_app.pages import render
from web_app.problems import problem_responses
from web_app.routes.runs import list_runs
from web_app.security import TokenClaims

router = APIRouter(tags=["results"])
Reader = Annotated[TokenClaims, Security(current_user, scopes=["results:read"])]
PageReader = Annotated[TokenClaims, Security(page_user, scopes=["results:read"])]


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


@router.get("/api/v1/results", summary="Index of result keys", responses=problem_responses(401, 403, 503))
async def results_index(user: Reader, db: DbDep) -> list[ResultSummary]:
    return [ResultSummary.model_validate(d.model_dump()) for d in await _documents(db)]


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
) -> PublicResult:
    raw = await db.get_document("processed", key)
    if raw is None:
        raise HTTPException(404, f"No result {key!r}; GET /api/v1/results lists them")
    try:
        doc = ResultDocument.model_validate(raw)
    except ValidationError:
        raise HTTPException(404, f"Result {key!r} is not in a readable form") from None
    return suppress(doc, settings.k_min_group, analyst=_is_analyst(user))


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
    """Each notebook's latest finished run, where it failed: the figures shown may be stale."""
    latest: dict[str, RunRecord] = {}
    for run in await list_runs(db, limit=200):
        if run.status in ("succeeded", "failed", "timed_out"):
            latest.setdefault(run.notebook, run)
    return [run for run in latest.values() if run.status != "succeeded"]


@router.get("/results", response_class=HTMLResponse, include_in_schema=False)
async def results_page(request: Request, user: PageReader, db: DbDep, settings: SettingsDep) -> Response:
    k = settings.k_min_group
    documents = await _documents(db)
    results = [suppress(d, k, analyst=_is_analyst(user)) for d in documents]
    charts = {r.key: _chart(r) for r in results}
    newest = max(documents, key=lambda d: d.computed_at, default=None)
    return render(
        request,
        "results.html",
        {
            "results": results,
            "charts": charts,
            "k": k,
            "as_of_run": newest.run_id if newest else None,
            "failed_runs": await _failed_latest_runs(db),
            "analyst": _is_analyst(user),
            "voila_url": settings.voila_url,
            "max_rows": MAX_PAGE_ROWS,
        },
    )
