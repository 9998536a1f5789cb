"""Live dashboards for analysts: Voilà, proxied under `/dashboards/live/` on the web app's own
origin and sign-in (HTTP, and the kernels' WebSockets). Voilà itself listens on loopback only.

Scope `analyst` (or `admin`). A page that would start a kernel is admitted only below the cap
(`WORKBENCH_VOILA_MAX_KERNELS`, `web_app.live_kernels`), and only while the analyst's account holds
fewer than `WORKBENCH_VOILA_KERNELS_PER_ACCOUNT`; past either the viewer is sent to the dashboard's
snapshot with a line saying why. A socket is refused past two to one kernel, or two per live page
an account may hold (`LiveKernels.take_socket`), or to a kernel no page of the account's started
(as this process knows, else as `KernelOwners` recorded it for every web process). When a
page's last socket closes its kernel is shut down; a socket whose viewer did nothing for
`WORKBENCH_VOILA_IDLE_SECONDS` is closed (`voila_proxy.pump`: a script asking the kernel's info is
not a viewer), and Voilà shuts such a kernel down too; a page sent that opens no socket within
`WORKBENCH_VOILA_CONNECT_SECONDS` has its kernel shut down too (`web_app.page_watch`). An open
socket's user is checked again every half `AccountCache.ttl` as at its connect, and the socket
closed once signed out, disabled or without the scope (kept for a minute while the db-api cannot
answer).

A browser sends cookies on a cross-site WebSocket too, so a socket must come from this origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Security, WebSocket, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from limits.errors import StorageError
from starlette.datastructures import State
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection

from pipeline_lib.dashboards.catalog import NAME_PATTERN
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH
from pipeline_lib.wire.requests import DbApiCallError
from web_app.deps import (
    SESSION_COOKIE,
    LiveKernelsDep,
    SettingsDep,
    TokenReader,
    VoilaHttpDep,
    page_user,
)
from web_app.live_kernels import KERNEL_ID
from web_app.routes.result_data import is_analyst
from web_app.security import TokenClaims
from web_app.voila_proxy import VoilaUnavailable, forward, open_kernel_socket, pump, shut_down_kernel

log = logging.getLogger(__name__)
router = APIRouter(tags=["dashboards"])
Analyst = Annotated[TokenClaims, Security(page_user, scopes=["analyst"])]
_RENDER = re.compile(rf"voila/render/({NAME_PATTERN})\.ipynb")
_RENDER_PREFIX = "voila/render/"
_SHUTDOWN = re.compile(rf"voila/api/shutdown/{KERNEL_ID}")
# Voilà's paths that name one kernel: only its page's account may use them (as its socket).
_OF_KERNEL = re.compile(rf"(?:voila/api/shutdown|api/kernels)/({KERNEL_ID})(?:/.*)?")
POLICY_VIOLATION = 1008  # WebSocket close code: refused by policy (sign-in, scope or origin)
TRY_AGAIN_LATER = 1013  # WebSocket close code: the server cannot serve it now
# How long an open socket stays while its user's account cannot be checked (the db-api down).
UNCHECKED_SECONDS = 60.0


def same_origin(connection: HTTPConnection) -> bool:
    """Whether the request comes from a page of this app: its Origin names the host it was sent to."""
    origin = connection.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == connection.headers.get("host")


async def socket_user(websocket: WebSocket) -> TokenClaims | None:
    """The signed-in user of a WebSocket, from the session cookie (as `page_user` for pages)."""
    state = websocket.app.state
    tokens = TokenReader(state.jwt_secret, state.revoked_tokens, state.accounts, state.db)
    return await tokens.claims(websocket.cookies.get(SESSION_COOKIE))


@router.websocket(LIVE_DASHBOARDS_PATH + "/api/kernels/{kernel_id}/channels")
async def kernel_channels(websocket: WebSocket, kernel_id: str) -> None:
    """A live page's socket to its kernel, relayed to Voilà's."""
    user = await socket_user(websocket)
    if (
        user is None
        or not is_analyst(user)
        or not same_origin(websocket)
        or not re.fullmatch(KERNEL_ID, kernel_id)
    ):
        await websocket.close(code=POLICY_VIOLATION)  # before accepting: the handshake gets a 403
        return
    try:
        theirs = await _another_accounts(websocket.app.state, kernel_id, user.username)
    except StorageError as exc:
        log.warning(
            "live dashboard socket refused: its kernel's owner could not be checked",
            extra={"kernel": kernel_id, "account": user.username, "error": str(exc)},
        )
        await websocket.close(code=TRY_AGAIN_LATER)
        return
    live = websocket.app.state.live_kernels
    # take_socket checks this process's owner again, with no await between the check and the take.
    if refused := "owner" if theirs else live.take_socket(kernel_id, user.username):
        why = "another account's kernel" if refused == "owner" else "too many sockets"
        log.warning(
            f"live dashboard socket refused: {why}",
            extra={"kernel": kernel_id, "account": user.username, "limit": refused},
        )
        await websocket.close(code=POLICY_VIOLATION)
        return
    try:
        await _relay(websocket, kernel_id, user.username)
    finally:
        live.give_socket_back(kernel_id, user.username)


async def _another_accounts(state: State, kernel_id: str, account: str) -> bool:
    """Whether `kernel_id` is not `account`'s to use: this process knows it as another account's,
    or, not knowing it, finds no page of `account`'s recorded as its starter (`KernelOwners`: the
    page may have gone through another web process). Raises `StorageError` when that cannot be read."""
    owner = state.live_kernels.owner(kernel_id)
    if owner is not None:
        return owner != account
    return not await state.kernel_owners.started(kernel_id, account)


async def _relay(websocket: WebSocket, kernel_id: str, account: str) -> None:
    """The socket relayed to Voilà's for the kernel until either closes; the kernel shut down when
    it was its last."""
    state = websocket.app.state
    live = state.live_kernels
    live.opening(kernel_id)  # its page's check must not shut the kernel down meanwhile
    try:
        upstream = await open_kernel_socket(state.settings, websocket)
    except VoilaUnavailable as exc:
        log.warning("live dashboard socket refused", extra={"kernel": kernel_id, "error": str(exc)})
        await websocket.close(code=POLICY_VIOLATION)
        return
    finally:
        live.opened(kernel_id)
    live.connected(kernel_id, account)
    try:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _pump_while_allowed(websocket, upstream, kernel_id, account)
    finally:
        last = live.disconnected(kernel_id)  # counted first: the awaits below may be cut short
        try:
            await upstream.close()  # closed already, but for a browser gone before `accept`
        finally:
            if last and await shut_down_kernel(state.voila_http, state.settings, kernel_id):
                live.released(kernel_id)


async def _pump_while_allowed(
    websocket: WebSocket, upstream: ClientConnection, kernel_id: str, account: str
) -> None:
    """`pump` until it ends, or until `_refusal` says the socket's user may no longer use it: then
    the browser's socket is closed with its code and reason, and Voilà's by `pump` as it is
    cancelled."""
    relaying = asyncio.create_task(pump(websocket, upstream, websocket.app.state.settings.voila_idle_seconds))
    checking = asyncio.create_task(_refusal(websocket))
    try:
        done, _ = await asyncio.wait((relaying, checking), return_when=asyncio.FIRST_COMPLETED)
        if checking in done:
            code, why = checking.result()  # an unexpected error of the check ends the relay too
            # Cancelled first and closed next, with no await between: the close marks the browser's
            # socket closed at once, so `pump`'s own close of it (GOING_AWAY) finds it so and yields.
            relaying.cancel()
            log.warning(
                "live dashboard socket closed: its user could not be confirmed",
                extra={"kernel": kernel_id, "account": account, "reason": why},
            )
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the browser's side went first
                await websocket.close(code=code, reason=why)
    finally:
        checking.cancel()
        if not relaying.cancelling():  # cancelled once only: its clean-up closes Voilà's socket
            relaying.cancel()
        await asyncio.gather(relaying, checking, return_exceptions=True)


async def _refusal(websocket: WebSocket) -> tuple[int, str]:
    """The close code and reason once the socket's user may no longer use it: checked as at the
    socket's connect (the account, its scopes, the token, which expires with the sign-in) every
    half `ttl` of the app's account cache, whose copy may be up to `ttl` old: a change closes the
    socket within 1.5 `ttl`."""
    unanswered_since: float | None = None
    while True:
        await asyncio.sleep(websocket.app.state.accounts.ttl / 2)
        try:
            user = await socket_user(websocket)
        except (DbApiCallError, StorageError) as exc:
            # No answer (the db-api, or the shared store of sign-outs, unreachable): a short outage
            # should not cut every live session, and the account was valid at its last check; one
            # that lasts closes the socket (its dashboard cannot read anything meanwhile anyway).
            now = time.monotonic()
            if unanswered_since is None:
                unanswered_since = now
                log.info("live dashboard socket's user not checked", extra={"error": str(exc)})
            elif now - unanswered_since > UNCHECKED_SECONDS:
                return TRY_AGAIN_LATER, f"the account could not be checked for {UNCHECKED_SECONDS:g} s"
            continue
        unanswered_since = None
        if user is None:
            return POLICY_VIOLATION, "signed out, expired, or the account disabled or removed"
        if not is_analyst(user):
            return POLICY_VIOLATION, "the account no longer has the analyst scope"


def _plain(path: str) -> bool:
    """No empty, '.' or '..' segment (a doubled or trailing slash makes an empty one). httpx and
    Tornado resolve such segments, so `voila/./render/x.ipynb` or `voila/render/x.ipynb/` is the
    page `x` to Voilà: let through, it would start a kernel the cap did not count."""
    return all(segment not in ("", ".", "..") for segment in path.split("/"))


def _to_snapshot(name: str, why: str) -> RedirectResponse:
    return RedirectResponse(f"/dashboards/{name}?live={why}", status_code=status.HTTP_303_SEE_OTHER)


@router.api_route(
    LIVE_DASHBOARDS_PATH + "/{path:path}", methods=["GET", "HEAD", "POST"], include_in_schema=False
)
async def live_dashboard(
    request: Request,
    path: str,
    user: Analyst,
    settings: SettingsDep,
    live: LiveKernelsDep,
    voila: VoilaHttpDep,
) -> Response:
    """Voilà's pages, assets and kernel API, for analysts; a new page only below the cap."""
    if not _plain(path) or (path.startswith(_RENDER_PREFIX) and not _RENDER.fullmatch(path)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    if request.method == "POST" and not _SHUTDOWN.fullmatch(path):
        raise HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED, "Live dashboards take no other posts")
    if request.method == "POST" and not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "This post must come from a page of this site")
    kernel = _OF_KERNEL.fullmatch(path)
    if kernel and await _another_accounts(request.app.state, kernel[1], user.username):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "This live dashboard is another account's")
    page = _RENDER.fullmatch(path) if request.method == "GET" else None
    if page and live.cap == 0:
        return _to_snapshot(page[1], "off")
    if page and (refused := live.admit(user.username)):
        return _to_snapshot(page[1], refused)
    try:
        response = await forward(voila, settings, request)
    except VoilaUnavailable as exc:
        if page:
            live.give_back(user.username)
            return _to_snapshot(page[1], "down")
        log.warning("live dashboards unreachable", extra={"error": str(exc)})
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "The live dashboards are not running"
        ) from None
    if page and response.status_code != 200:
        live.give_back(user.username)
    elif page and isinstance(response, StreamingResponse):
        watch = request.app.state.page_watch
        response.body_iterator = watch.relay(response.body_iterator, user.username)
    return response
