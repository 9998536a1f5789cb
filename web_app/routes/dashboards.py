"""The dashboards for everyone who may read results: `/dashboards` lists them, `/dashboards/<name>`
shows the latest snapshot of one (rendered after each processing run, as the public sees the
results), with the run it shows and when it was rendered. Same origin and sign-in as the rest of
the app; Voilà itself stays on loopback.

A snapshot's HTML was sanitised (`web_app.sanitise`) and its page allows no script at all; it may
carry inline styles (the dashboards' style sheet), which only its own page allows.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, Security, status
from fastapi.responses import HTMLResponse

from pipeline_lib.dashboards.catalog import NAME_PATTERN, live_path
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH, Settings
from web_app.deps import DbDep, LiveKernelsDep, SettingsDep, SnapshotCacheDep, page_user
from web_app.live_kernels import LiveKernels
from web_app.pages import render
from web_app.routes.result_data import is_analyst
from web_app.security import TokenClaims

router = APIRouter(tags=["dashboards"])
PageReader = Annotated[TokenClaims, Security(page_user, scopes=["results:read"])]
Name = Annotated[str, Path(pattern=f"^{NAME_PATTERN}$")]
ImageFile = Annotated[str, Path(pattern=r"^[0-9a-f]{32}\.(png|jpg|svg)$")]
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
        "live_url": f"{LIVE_DASHBOARDS_PATH}/",
    }
    return await render(request, "dashboards.html", context)


def why_not_live(why: str | None, settings: Settings, kernels: LiveKernels) -> str | None:
    """The line that tells an analyst sent here from the live dashboard why they got the snapshot."""
    minutes = max(1, round(settings.voila_idle_seconds / 60))
    yours = kernels.per_account
    return {
        "busy": f"All {kernels.cap} live dashboards are in use, so this is the snapshot. "
        f"A live one frees up when its page is closed, or after {minutes} idle minutes.",
        "yours": f"You have {yours} live {'dashboard' if yours == 1 else 'dashboards'} open, as many as "
        "one account may, so this is the snapshot. Close one of their pages to open another live.",
        "off": "Live dashboards are turned off on this server (WORKBENCH_VOILA_MAX_KERNELS=0), "
        "so this is the snapshot.",
        "down": "The live dashboards are not running (they start with `workbench up`), "
        "so this is the snapshot.",
    }.get(why or "")


@router.get("/dashboards/{name}", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page(
    request: Request,
    name: Name,
    user: PageReader,
    db: DbDep,
    settings: SettingsDep,
    cache: SnapshotCacheDep,
    kernels: LiveKernelsDep,
    live: Annotated[Literal["busy", "yours", "off", "down"] | None, Query()] = None,
) -> Response:
    snapshots = await cache.snapshots(db)
    names = cache.names
    snapshot = snapshots.get(name)
    if snapshot is None and name not in names:
        response = await render(
            request, "dashboard_missing.html", {"name": name, "names": names}, status_code=404
        )
        return response
    context = {
        "name": name,
        "snapshot": snapshot,
        "names": names,
        "titles": {n: s.title for n, s in snapshots.items()},
        "analyst": is_analyst(user),
        "live_url": live_path(name),
        "not_live": why_not_live(live, settings, kernels) if is_analyst(user) else None,
    }
    response = await render(request, "dashboard.html", context)
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP
    return response


@router.get("/dashboards/{name}/images/{file_name}", include_in_schema=False)
async def dashboard_image(
    name: Name, file_name: ImageFile, user: PageReader, db: DbDep, cache: SnapshotCacheDep
) -> Response:
    """A plot of a snapshot, by its content's digest: the same name is always the same bytes."""
    snapshot = (await cache.snapshots(db)).get(name)
    image = snapshot.images.get(file_name) if snapshot else None
    if image is None:  # not in this rendering (a newer one replaced it): the page has the new name
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such image in the latest snapshot")
    headers = {
        "Cache-Control": "private, max-age=31536000, immutable",
        # An SVG opened on its own is a document: no script, no requests, its own origin.
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    }
    return Response(image.data, media_type=image.media_type, headers=headers)
