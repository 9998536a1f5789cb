"""The results for people: `/results` lists every result as a card, `/results/<key>` shows one
(its chart, then its tables a page of rows at a time), and each table and chart downloads as CSV,
SVG and PNG (each PNG drawn once and kept: `chart_renders`). Page and downloads show what `suppress`
returns for the reader, and nothing else."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, Security
from fastapi.responses import HTMLResponse
from fastapi.security import SecurityScopes

from pipeline_lib.process.results import PublicResult, suppress
from pipeline_lib.runs.freshness import Freshness
from pipeline_lib.views.charts import standalone_svg
from web_app.chart_renders import RETRY_AFTER_SECONDS, ChartsBusy
from web_app.deps import (
    ChartRendersDep,
    DbDep,
    SettingsDep,
    TokenReaderDep,
    current_user,
    oauth2_scheme,
    page_user,
)
from web_app.pages import render
from web_app.routes import result_data as data
from web_app.routes.result_views import (
    chart_svg,
    download_name,
    table_csv,
    table_page,
)
from web_app.security import TokenClaims

router = APIRouter(tags=["results"])
PageReader = Annotated[TokenClaims, Security(page_user, scopes=["results:read"])]
Key = Annotated[str, Path(pattern=data.KEY_PATTERN)]
TableName = Annotated[str, Path(pattern=data.KEY_PATTERN)]


async def download_user(
    security_scopes: SecurityScopes,
    request: Request,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    tokens: TokenReaderDep,
) -> TokenClaims:
    """A download's reader: a script by its bearer token (401/403 as the API), a browser by its
    session (no session: to the sign-in page, as the result page it was linked from)."""
    if bearer:
        return await current_user(security_scopes, request, bearer, tokens)
    return await page_user(security_scopes, request, tokens)


DownloadReader = Annotated[TokenClaims, Security(download_user, scopes=["results:read"])]


async def _render_page(
    request: Request,
    template: str,
    db: DbDep,
    headline: Freshness | None,
    *,
    k: int,
    analyst: bool,
    show_age: bool,
    **fields: object,
) -> Response:
    """A results page with what each of them shows: k, the reader's kind and the runs' status
    (judged by `headline`, the freshness of the figures the page leads with)."""
    status = await data.page_status(db, headline, analyst=analyst)
    context = {"k": k, "analyst": analyst, "show_age": show_age, "status": status, **fields}
    return await render(request, template, context)


@router.get("/results", response_class=HTMLResponse, include_in_schema=False)
async def results_page(request: Request, user: PageReader, db: DbDep, settings: SettingsDep) -> Response:
    k, analyst = settings.k_min_group, data.is_analyst(user)
    documents = await data.read_documents(db)
    results = [suppress(d, k, analyst=analyst) for d in documents]
    fresh = await data.freshness(db, settings, documents, details=analyst)
    headline = max(fresh.values(), key=lambda f: f.computed_at, default=None)
    return await _render_page(
        request,
        "results.html",
        db,
        headline,
        k=k,
        analyst=analyst,
        show_age=True,
        results=results,
        freshness=fresh,
    )


@router.get("/results/{key}", response_class=HTMLResponse, include_in_schema=False)
async def result_page(
    request: Request,
    key: str,
    user: PageReader,
    db: DbDep,
    settings: SettingsDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    table: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    # A malformed key is a page that does not exist, as an unknown one: a person gets the same answer.
    doc = None
    if re.fullmatch(data.KEY_PATTERN, key):
        try:
            doc = await data.read_document(db, key)
        except data.Unreadable:
            doc = None
    if doc is None:
        return await render(request, "result_missing.html", {"key": key[:200]}, status_code=404)
    k, analyst = settings.k_min_group, data.is_analyst(user)
    result = suppress(doc, k, analyst=analyst)
    fresh = (await data.freshness(db, settings, [doc], details=analyst))[doc.key]
    # `page` turns the pages of the table named by `table`, or of every long table when none is named.
    pages = [table_page(t, page if table in (None, t.name) else 1) for t in result.tables]
    return await _render_page(
        request,
        "result.html",
        db,
        fresh,
        k=k,
        analyst=analyst,
        show_age=False,
        r=result,
        fresh=fresh,
        chart=chart_svg(result),
        pages=pages,
    )


async def _public(db: DbDep, settings: SettingsDep, key: str, user: TokenClaims) -> PublicResult:
    """The result as this reader may see it, or 404."""
    try:
        doc = await data.read_document(db, key)
    except data.Unreadable:
        doc = None
    if doc is None:
        raise HTTPException(404, f"No result {key!r}; /results lists them")
    return suppress(doc, settings.k_min_group, analyst=data.is_analyst(user))


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get("/results/{key}/tables/{name}.csv", include_in_schema=False)
async def table_download(
    key: Key, name: TableName, user: DownloadReader, db: DbDep, settings: SettingsDep
) -> Response:
    result = await _public(db, settings, key, user)
    found = next((t for t in result.tables if t.name == name), None)
    if found is None:
        raise HTTPException(404, f"Result {key!r} shows no table {name!r}")
    filename = download_name(f"{key}-{name}", ".csv", exact=result.exact)
    return Response(table_csv(found), media_type="text/csv; charset=utf-8", headers=_attachment(filename))


async def _chart(
    db: DbDep, settings: SettingsDep, key: str, user: TokenClaims, suffix: str
) -> tuple[str, str]:
    """The chart this reader sees (SVG) and its file name, or 404."""
    result = await _public(db, settings, key, user)
    svg = chart_svg(result)
    if svg is None:
        raise HTTPException(404, f"Result {key!r} has no chart")
    return svg, download_name(f"{key}-chart", suffix, exact=result.exact)


@router.get("/results/{key}/chart.svg", include_in_schema=False)
async def chart_download(key: Key, user: DownloadReader, db: DbDep, settings: SettingsDep) -> Response:
    svg, filename = await _chart(db, settings, key, user, ".svg")
    return Response(standalone_svg(svg), media_type="image/svg+xml", headers=_attachment(filename))


@router.get("/results/{key}/chart.png", include_in_schema=False)
async def chart_png_download(
    key: Key, user: DownloadReader, db: DbDep, settings: SettingsDep, renders: ChartRendersDep
) -> Response:
    svg, filename = await _chart(db, settings, key, user, ".png")
    try:
        png = await renders.png(svg)
    except ChartsBusy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    return Response(png, media_type="image/png", headers=_attachment(filename))
