"""The web app factory: `create_app()` wires settings, the db-api client, middleware and routers."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.dashboards.catalog import served_names
from pipeline_lib.settings import Settings, jwt_secret
from pipeline_lib.wire.requests import DbApiCallError
from web_app import api_docs, problems, voila_proxy
from web_app.accounts import AccountCache
from web_app.body_idle import BodyIdleMiddleware
from web_app.body_limit import BodyLimitMiddleware
from web_app.chart_renders import ChartRenders
from web_app.client_address import ClientAddressMiddleware, parse_trusted_proxies
from web_app.deps import LoginRequired
from web_app.kernel_owners import KernelOwners
from web_app.live_kernels import LiveKernels
from web_app.middleware import SecurityHeaders
from web_app.page_watch import PageWatch
from web_app.ratelimit import FormRateLimiter, limit_storage
from web_app.revoked_tokens import RevokedTokens
from web_app.routes import (
    auth,
    dashboards,
    form,
    health,
    live_dashboards,
    results,
    runs,
    schools,
    submissions,
)
from web_app.run_notebooks import RunNotebookRenders
from web_app.school_cache import SchoolCache
from web_app.serving import freeze_startup_heap
from web_app.signin_guard import SignInGuard
from web_app.snapshot_cache import SnapshotCache
from web_app.upload_slots import UploadSlots

log = logging.getLogger(__name__)


def _body_limits(settings: Settings) -> object:
    def limit_for(path: str) -> int:
        if path == "/api/v1/submissions/bulk":
            return settings.max_upload_bytes
        if path in ("/api/v1/schools/bulk", "/schools"):
            return 5 * 1024 * 1024
        if path.startswith("/api/"):
            return settings.max_json_bytes
        return settings.max_form_bytes

    return limit_for


def connect_db_api(settings: Settings) -> AsyncDbApiClient:
    return AsyncDbApiClient.from_settings(settings, timeout=5.0)


def create_app(
    settings: Settings | None = None, connect: Callable[[Settings], AsyncDbApiClient] = connect_db_api
) -> FastAPI:
    """The app; `connect` makes its db-api client at start-up (tests pass an in-memory one)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = connect(settings)
        try:
            if await app.state.db.count("users") == 0:
                log.warning(
                    "no users yet: create the first admin with `workbench users add admin --scope admin`"
                )
        except DbApiCallError as exc:
            log.warning(
                "db-api not reachable at start-up; pages will answer 503 until it is",
                extra={"error": str(exc)},
            )
        freeze_startup_heap()
        yield
        await app.state.page_watch.close()  # before its client closes
        await app.state.voila_http.aclose()
        await app.state.db.close()

    app = FastAPI(
        title="Student Data Workbench",
        version="1",
        summary="Submit student records and read the analysed results.",
        lifespan=lifespan,
        docs_url=None,  # api_docs serves /docs and /redoc with no outside access
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.jwt_secret = jwt_secret(settings)
    limits = limit_storage(settings)
    app.state.form_limiter = FormRateLimiter(settings.form_rate_limit, limits)
    app.state.sign_in_guard = SignInGuard(limits)
    app.state.revoked_tokens = RevokedTokens(limits)
    app.state.accounts = AccountCache()
    app.state.bulk_uploads = UploadSlots(settings.max_bulk_uploads, settings.max_bulk_uploads_per_user)
    app.state.school_cache = SchoolCache()
    app.state.run_notebook_renders = RunNotebookRenders()
    app.state.chart_renders = ChartRenders()
    app.state.snapshot_cache = SnapshotCache(names=functools.partial(served_names, settings))
    # A page admitted whose kernel the proxy did not read holds its slot as long as that kernel
    # may live: until Voilà's culler finds it idle. One read is shut down if it never connects.
    unbound = settings.voila_idle_seconds + settings.voila_cull_interval
    app.state.live_kernels = LiveKernels(
        settings.voila_max_kernels, settings.voila_kernels_per_account, bind_seconds=unbound
    )
    app.state.voila_http = voila_proxy.http_client()
    # A page's kernel is its account's for as long as its socket's sign-in may last: the socket
    # opens within connect_seconds of the page, and is closed when its sign-in expires.
    owned = settings.access_token_minutes * 60 + math.ceil(settings.voila_connect_seconds)
    app.state.kernel_owners = KernelOwners(limits, owned)
    app.state.page_watch = PageWatch(
        app.state.live_kernels,
        functools.partial(voila_proxy.kernel_connections, app.state.voila_http, settings),
        functools.partial(voila_proxy.shut_down_kernel, app.state.voila_http, settings),
        settings.voila_connect_seconds,
        app.state.kernel_owners,
    )

    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limits(settings))
    app.add_middleware(
        BodyIdleMiddleware, seconds=settings.upload_idle_seconds, max_seconds=settings.upload_max_seconds
    )
    app.add_middleware(SecurityHeaders)
    # Outermost: everything below sees the client address and scheme it counts.
    app.add_middleware(ClientAddressMiddleware, trusted=parse_trusted_proxies(settings.trusted_proxies))
    problems.install(app)
    api_docs.install(app)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    # The live dashboards' routes before the snapshots': `/dashboards/live/...` is theirs.
    for module in (health, auth, form, submissions, schools, results, live_dashboards, dashboards, runs):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app
