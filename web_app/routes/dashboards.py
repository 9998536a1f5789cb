"""The dashboards for everyone who may read results: `/dashboards` lists them, `/dashboards/<name>`
shows the latest snapshot of one (rendered after each processing run, as the public sees the
results), with the run it shows and when it was rendered. Same origin and sign-in as the rest of
the app; Voilà itself stays on loopback.

A snapshot's HTML was sanitised (`web_app.sanitise`) and its page allows no script at all; it may
carry inline styles (the dashboards' style sheet), which only its own page allows.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, Security
from fastapi.responses import HTMLResponse

from pipeline_lib.dashboards.catalog import NAME_PATTERN
from web_app.deps import DbDep, SettingsDep, SnapshotCacheDep, page_user
from web_app.pages import render
from web_app.routes.result_data import is_analyst
from web_app.security import TokenClaims

router = APIRouter(tags=["dashboards"])
PageReader = Annotated[TokenClaims, Security(page_user, scopes=["results:read"])]
Name = Annotated[str, Path(pattern=f"^{NAME_PATTERN}$")]
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'self'"
)


@router.get("/dashboards", response_class=HTMLResponse, include_in_schema=False)
async def dashboards_page(
    request: Request, user: PageReader, db: DbDep, settings: SettingsDep, cache: SnapshotCacheDep
) -> Response:
    snapshots = await cache.snapshots(db)
    names = [*cache.names, *sorted(set(snapshots) - set(cache.names))]  # a removed one keeps its page
    context = {
        "names": names,
        "snapshots": snapshots,
        "analyst": is_analyst(user),
        "voila_url": settings.voila_url,
    }
    return render(request, "dashboards.html", context)


@router.get("/dashboards/{name}", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page(
    request: Request, name: Name, user: PageReader, db: DbDep, settings: SettingsDep, cache: SnapshotCacheDep
) -> Response:
    snapshots = await cache.snapshots(db)
    names = cache.names
    snapshot = snapshots.get(name)
    if snapshot is None and name not in names:
        response = render(request, "dashboard_missing.html", {"name": name, "names": names}, status_code=404)
        return response
    context = {
        "name": name,
        "snapshot": snapshot,
        "names": names,
        "titles": {n: s.title for n, s in snapshots.items()},
        "analyst": is_analyst(user),
        "voila_url": settings.voila_url,
    }
    response = render(request, "dashboard.html", context)
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP
    return response
