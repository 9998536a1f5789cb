"""Forwarding to Voilà on loopback: HTTP requests (streamed both ways) and kernel WebSockets.

Voilà serves under the same path as the web app (`LIVE_DASHBOARDS_PATH`), so nothing is
rewritten. Only what Voilà needs crosses: an allowlist of request headers (never the web app's
session cookie or bearer token), and the response without hop-by-hop headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time

import httpx
from fastapi import Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from pipeline_lib.settings import LIVE_DASHBOARDS_PATH, Settings, reachable

log = logging.getLogger(__name__)

_FORWARDED_REQUEST = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-type",
        "if-modified-since",
        "if-none-match",
        "range",
        "user-agent",
        "x-xsrftoken",  # Voilà's page posts its kernel's shutdown with it (and the `_xsrf` cookie)
    }
)
XSRF_COOKIE = "_xsrf"
GOING_AWAY = 1001
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade", "server", "date"}
)  # fmt: skip
# Kernel messages carry plots as base64: generous, but bounded.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"  # binary frames: offsets, channel, header, ...
# What a page's script (or any script) asks with nobody at the page; Voilà's culler does not count
# them either (jupyter_server's `untracked_message_types`).
NOT_ACTIVITY = frozenset({"kernel_info_request", "comm_info_request"})
# Those are a few hundred bytes: a longer message (or v1 header) is activity, read no further.
MAX_TYPE_READ = 8 * 1024


def voila_origin(settings: Settings) -> str:
    """Voilà's host and port as this machine reaches them (a wildcard bind is reached on loopback)."""
    host = reachable(settings.voila_host)
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{settings.voila_port}"


def http_client() -> httpx.AsyncClient:
    """The client the proxy forwards with: a kernel's first page may take a minute to execute."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(300.0, connect=5.0),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        follow_redirects=False,
        trust_env=False,  # loopback: no HTTP_PROXY from the environment
    )


class VoilaUnavailable(Exception):
    """Voilà did not answer (not started, or stopped)."""


async def forward(client: httpx.AsyncClient, settings: Settings, request: Request) -> Response:
    """`request` forwarded to Voilà; its answer streamed back as it comes."""
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_REQUEST}
    if xsrf := request.cookies.get(XSRF_COOKIE):  # Voilà's own cookie; never the app's session
        headers["cookie"] = f"{XSRF_COOKIE}={xsrf}"
    upstream = client.build_request(
        request.method,
        f"http://{voila_origin(settings)}{request.url.path}",
        params=request.url.query.encode() or None,
        headers=headers,
        content=await request.body() if request.method == "POST" else None,
    )
    try:
        answer = await client.send(upstream, stream=True)
    except httpx.TransportError as exc:
        raise VoilaUnavailable(str(exc)) from exc
    kept = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
    response = StreamingResponse(
        answer.aiter_raw(), status_code=answer.status_code, background=BackgroundTask(answer.aclose)
    )
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in kept]
    return response


async def open_kernel_socket(settings: Settings, websocket: WebSocket) -> ClientConnection:
    """The socket to Voilà for the kernel channel the browser asked for, with its subprotocols."""
    query = websocket.url.query
    url = f"ws://{voila_origin(settings)}{websocket.url.path}" + (f"?{query}" if query else "")
    offered = websocket.scope.get("subprotocols") or None
    try:
        return await connect(
            url,
            subprotocols=offered,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=10,
            ping_interval=None,  # Voilà pings; the browser's side has its own
            proxy=None,
        )
    except InvalidStatus as exc:
        raise VoilaUnavailable(f"Voilà refused the kernel socket: HTTP {exc.response.status_code}") from exc
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise VoilaUnavailable(str(exc)) from exc


def viewer_activity(frame: str | bytes, v1: bool) -> bool:
    """Whether a message from the browser is the viewer's doing: one of any type but `NOT_ACTIVITY`,
    or whose type is not read at a bounded cost. `v1`: the socket speaks `V1_PROTOCOL`."""
    if isinstance(frame, str):  # the whole message as JSON
        message = _small_json(frame)
        header = message.get("header") if isinstance(message, dict) else None
    elif v1:
        header = _small_json(_v1_header(frame))
    else:
        return True  # the legacy binary protocol: a message with buffers, never one of those
    msg_type = header.get("msg_type") if isinstance(header, dict) else None
    return not isinstance(msg_type, str) or msg_type not in NOT_ACTIVITY


def _v1_header(frame: bytes) -> bytes | None:
    """The header part of a v1 frame: 8-byte little-endian offset count, offsets (from the frame's
    start) of the channel, header, parent header, ..., then the parts (jupyter_server's
    `serialize_msg_to_ws_v1`). None when not one, or longer than `MAX_TYPE_READ`."""
    if len(frame) < 32 or int.from_bytes(frame[:8], "little") < 3:
        return None
    start, end = int.from_bytes(frame[16:24], "little"), int.from_bytes(frame[24:32], "little")
    if not 32 <= start <= end <= min(len(frame), start + MAX_TYPE_READ):
        return None
    return frame[start:end]


def _small_json(text: str | bytes | None) -> object:
    """`text` parsed, when JSON of at most `MAX_TYPE_READ` characters; else None."""
    if text is None or len(text) > MAX_TYPE_READ:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON (or not UTF-8); nested past the parser's depth
        return None


class _Activity:
    """When the viewer last did something: the last message from the browser `viewer_activity`."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def seen(self) -> None:
        self.last = time.monotonic()


async def _browser_to_voila(websocket: WebSocket, upstream: ClientConnection, activity: _Activity) -> None:
    v1 = upstream.subprotocol == V1_PROTOCOL
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        frame = data if data is not None else message.get("text", "")
        if viewer_activity(frame, v1):
            activity.seen()
        await upstream.send(frame)


async def _voila_to_browser(websocket: WebSocket, upstream: ClientConnection) -> None:
    """The kernel's messages, none of them activity: they answer the viewer's (counted already), or
    a script's requests that do not count, or come from a notebook's own timer. So a computation
    still running `idle_seconds` (minutes) after the viewer's last change is cut off."""
    async for data in upstream:
        if isinstance(data, bytes):
            await websocket.send_bytes(data)
        else:
            await websocket.send_text(data)


async def _until_idle(activity: _Activity, idle_seconds: float) -> None:
    """Return once the viewer has done nothing for `idle_seconds`. Voilà's culler shuts such a
    kernel down too, but leaves its socket open (and its page's slot taken); this closes it."""
    while (left := activity.last + idle_seconds - time.monotonic()) > 0:
        await asyncio.sleep(left)


async def pump(websocket: WebSocket, upstream: ClientConnection, idle_seconds: float) -> None:
    """Relay messages both ways until either side closes or the viewer has been idle for
    `idle_seconds`, then close both."""
    activity = _Activity()
    tasks = [
        asyncio.create_task(_browser_to_voila(websocket, upstream, activity)),
        asyncio.create_task(_voila_to_browser(websocket, upstream)),
        asyncio.create_task(_until_idle(activity, idle_seconds)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, ConnectionClosed | WebSocketDisconnect):
                log.warning("live dashboard socket failed", extra={"error": repr(error)})
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
        code = upstream.close_code if upstream.close_code not in (None, 1000, 1005, 1006) else GOING_AWAY
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the browser's side closed already
            await websocket.close(code=code, reason="the live dashboard closed")


async def shut_down_kernel(client: httpx.AsyncClient, settings: Settings, kernel_id: str) -> bool:
    """Ask Voilà to shut a kernel down (its page is gone): whether it is gone now (one already
    gone is fine)."""
    url = f"http://{voila_origin(settings)}{LIVE_DASHBOARDS_PATH}/voila/api/shutdown/{kernel_id}"
    xsrf = secrets.token_hex(16)  # Tornado checks that the header repeats the cookie
    headers = {"cookie": f"{XSRF_COOKIE}={xsrf}", "x-xsrftoken": xsrf}
    try:
        answer = await client.post(url, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        log.warning("could not shut a live kernel down", extra={"kernel": kernel_id, "error": str(exc)})
        return False
    if answer.status_code >= 400 and answer.status_code != 404:
        log.warning(
            "could not shut a live kernel down", extra={"kernel": kernel_id, "status": answer.status_code}
        )
        return False
    return True


async def kernel_connections(client: httpx.AsyncClient, settings: Settings, kernel_id: str) -> int | None:
    """The sockets open to a kernel at Voilà, through any web process (0 for a kernel gone); None
    when Voilà does not say."""
    url = f"http://{voila_origin(settings)}{LIVE_DASHBOARDS_PATH}/api/kernels/{kernel_id}"
    try:
        answer = await client.get(url, timeout=10)
    except httpx.HTTPError:
        return None
    if answer.status_code == 404:
        return 0
    if answer.status_code != 200:
        return None
    try:
        model = answer.json()
    except ValueError:
        return None
    connections = model.get("connections") if isinstance(model, dict) else None
    return connections if type(connections) is int else None
