"""Live dashboards through the web app: a real db-api, a real Voilà (`workbench dashboards`, no
preheated kernel) on loopback, and the app in uvicorn proxying analysts to it, HTTP and kernel
WebSockets, with a cap of one live kernel and kernels culled after 6 idle seconds.

The browser's view (a filter changed through the proxied socket) is in
`tests/e2e/test_whole_system.py`; this module checks the gate: who may, from where, how many, and
for how long (an open socket's user is checked again while it is open).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from db_api.server import start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH
from pipeline_lib.wire.requests import DbApiCallError
from tests.conftest import TOKEN
from tests.processes import wait_for
from tests.web_app.conftest import _HASH, PASSWORD, ROLES, ThreadedUvicorn, settings_for
from tests.web_app.voila_server import running_voila
from tests.wire_servers import free_port
from web_app.accounts import AccountCache
from web_app.main import create_app
from web_app.routes import live_dashboards

pytestmark = [pytest.mark.slow]

IDLE_SECONDS = 6
# Set by the tests of pages that never connect (the app's default of 60 s for the others): under
# IDLE_SECONDS, so the app's check comes before Voilà's culler.
CONNECT_SECONDS = 2
RENDER = f"{LIVE_DASHBOARDS_PATH}/voila/render"
TTL = 0.5  # seconds the app may still believe an account it read, in the tests of open sockets' users
POLICY_VIOLATION = 1008


@dataclass
class Live:
    web: str
    voila: str  # Voilà's own address (loopback), to check what the proxy did there
    app_state: object
    db: DbApiClient

    @contextlib.contextmanager
    def signed_in(self, user: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.web, timeout=120) as client:
            csrf = client.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
            response = client.post("/login", data={"username": user, "password": PASSWORD, "csrf": csrf})
            assert response.status_code == 303
            yield client

    def kernel_alive(self, kernel_id: str) -> bool:
        return httpx.get(f"{self.voila}/api/kernels/{kernel_id}", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("live")
    db_api = start_server(SqliteStore(folder / "store.sqlite3"), "127.0.0.1:0", token=TOKEN)
    db = DbApiClient(f"127.0.0.1:{db_api.port}", TOKEN)
    for name, scopes in ROLES.items():
        db.put_document("users", name, {"scopes": scopes, "password_hash": _HASH, "disabled": False})
    voila_port, web_port = free_port(), free_port()
    overrides = {"voila_port": voila_port, "web_port": web_port, "voila_max_kernels": 1}
    overrides.update(voila_idle_seconds=IDLE_SECONDS)
    settings = settings_for(folder, db_api.port, **overrides)
    app = create_app(settings)
    server = ThreadedUvicorn(uvicorn.Config(app, host="127.0.0.1", port=web_port, log_level="warning"))
    thread = server.start_in_thread()
    try:
        with running_voila(folder, db_api.port, voila_port, web_port, IDLE_SECONDS) as voila_url:
            yield Live(f"http://127.0.0.1:{web_port}", voila_url, app.state, db)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        db.close()
        db_api.stop(grace=0)


def _kernel_id(page: httpx.Response) -> str:
    found = re.search(r'"kernelId": *"([0-9a-f-]{36})"', page.text)
    assert found, page.text[:2000]
    return found[1]


def _socket(live: Live, client: httpx.Client, kernel_id: str, origin: str | None = None) -> connect:
    """Open the kernel's channel socket through the app, as the page's script would."""
    headers = {"Origin": origin or live.web}
    if cookie := client.cookies.get("wb_session"):
        headers["Cookie"] = f"wb_session={cookie}"
    url = live.web.replace("http", "ws", 1) + f"{LIVE_DASHBOARDS_PATH}/api/kernels/{kernel_id}/channels"
    return connect(f"{url}?session_id={uuid.uuid4()}", additional_headers=headers, open_timeout=30)


def _request(msg_type: str, content: dict | None = None) -> str:
    """A message as the page's script sends it (the legacy JSON protocol: no subprotocol offered)."""
    return json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "username": "t", "session": uuid.uuid4().hex,
                   "msg_type": msg_type, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": content or {}, "channel": "shell", "buffers": [],
    })  # fmt: skip


async def _kernel_info(socket: ClientConnection) -> dict:
    await socket.send(_request("kernel_info_request"))
    while True:
        reply = json.loads(await asyncio.wait_for(socket.recv(), 30))
        if reply["msg_type"] == "kernel_info_reply":
            return reply["content"]


async def _handshake(live: Live, client: httpx.Client, kernel_id: str, origin: str | None = None) -> int:
    """The HTTP status the app answers a socket's handshake with (101: accepted)."""
    try:
        async with _socket(live, client, kernel_id, origin):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def _refused(live: Live, client: httpx.Client, kernel_id: str, origin: str | None = None) -> int:
    return asyncio.run(_handshake(live, client, kernel_id, origin))


def test_only_signed_in_analysts_get_live_dashboards(live: Live) -> None:
    page = f"{RENDER}/overview.ipynb"
    with httpx.Client(base_url=live.web) as anonymous:
        response = anonymous.get(page)
        assert response.status_code == 303 and response.headers["location"] == f"/login?next={page}"
    with live.signed_in("reader") as reader:
        refused = reader.get(page)
        assert refused.status_code == 403 and "analyst" in refused.text
        assert reader.get(f"{LIVE_DASHBOARDS_PATH}/voila/static/voila.js").status_code == 403
        assert "Open the live dashboard" not in reader.get("/dashboards/overview").text


def test_an_analyst_gets_voila_through_the_app_and_its_socket_from_this_origin_only(live: Live) -> None:
    with live.signed_in("analyst") as analyst, live.signed_in("reader") as reader:
        assert (
            'href="/dashboards/live/voila/render/overview.ipynb"' in analyst.get("/dashboards/overview").text
        )
        page = analyst.get(f"{RENDER}/overview.ipynb")
        assert page.status_code == 200 and "No data yet." in page.text
        assert "wb_session" not in page.headers.get("set-cookie", "")
        kernel_id = _kernel_id(page)
        assert live.kernel_alive(kernel_id)
        # A socket from another site's page (cross-site WebSocket hijacking), or without the scope.
        assert _refused(live, analyst, kernel_id, origin="http://evil.example") == 403
        assert _refused(live, reader, kernel_id) == 403
        with httpx.Client() as anonymous:
            assert _refused(live, anonymous, kernel_id) == 403

        async def use_and_leave() -> dict:
            async with _socket(live, analyst, kernel_id) as socket:
                return await _kernel_info(socket)

        assert asyncio.run(use_and_leave())["status"] == "ok"
        # The page's last socket closed: its kernel is shut down and its slot free again.
        wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")
        # Voilà takes no other post, and that one only from this origin.
        assert analyst.post(f"{LIVE_DASHBOARDS_PATH}/voila/api/contents/x", content=b"").status_code == 405
        shutdown = f"{LIVE_DASHBOARDS_PATH}/voila/api/shutdown/{uuid.uuid4()}"
        assert analyst.post(shutdown, headers={"Origin": "http://evil.example"}).status_code == 403
        assert analyst.get(f"{LIVE_DASHBOARDS_PATH}/voila/../../healthz").status_code == 404


def test_past_the_cap_an_analyst_gets_the_snapshot_and_why_until_a_kernel_is_free(live: Live) -> None:
    with live.signed_in("analyst") as analyst:
        page = analyst.get(f"{RENDER}/overview.ipynb")
        kernel_id = _kernel_id(page)

        async def hold_then_try() -> httpx.Response:
            async with _socket(live, analyst, kernel_id) as socket:
                await _kernel_info(socket)
                return await asyncio.to_thread(analyst.get, f"{RENDER}/models.ipynb")

        busy = asyncio.run(hold_then_try())
        assert busy.status_code == 303 and busy.headers["location"] == "/dashboards/models?live=busy"
        snapshot = analyst.get(busy.headers["location"])
        assert snapshot.status_code == 200
        assert "All 1 live dashboards are in use, so this is the snapshot." in snapshot.text
        wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")
        again = analyst.get(f"{RENDER}/models.ipynb")
        assert again.status_code == 200
        assert asyncio.run(_leave(live, analyst, _kernel_id(again)))


def test_one_analyst_cannot_hold_every_live_dashboard(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live page holds its kernel while its socket is open and busy: one analyst opening pages
    (tabs, or a script keeping sockets busy) took every place under the cap, and every other
    analyst got the snapshot for as long as that went on."""
    kernels = live.app_state.live_kernels  # type: ignore[attr-defined]
    monkeypatch.setattr(kernels, "cap", 2)
    monkeypatch.setattr(kernels, "per_account", 1, raising=False)
    with live.signed_in("analyst") as analyst, live.signed_in("admin") as other:
        first = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))

        async def hold_then_try() -> tuple[httpx.Response, httpx.Response]:
            async with _socket(live, analyst, first) as socket:
                await _kernel_info(socket)
                second = await asyncio.to_thread(analyst.get, f"{RENDER}/models.ipynb")
                theirs = await asyncio.to_thread(other.get, f"{RENDER}/models.ipynb")
                return second, theirs

        second, theirs = asyncio.run(hold_then_try())
        assert second.status_code == 303 and second.headers["location"] == "/dashboards/models?live=yours"
        snapshot = analyst.get(second.headers["location"])
        assert snapshot.status_code == 200
        assert "You have 1 live dashboard open, as many as one account may" in snapshot.text
        assert theirs.status_code == 200  # another analyst still gets a live page
        assert asyncio.run(_leave(live, other, _kernel_id(theirs)))
        wait_for(lambda: not live.kernel_alive(first), 30, "the first page's kernel to be shut down")
        again = analyst.get(f"{RENDER}/models.ipynb")  # its own page closed: a place of its own again
        assert again.status_code == 200
        assert asyncio.run(_leave(live, analyst, _kernel_id(again)))


async def _leave(live: Live, client: httpx.Client, kernel_id: str) -> bool:
    async with _socket(live, client, kernel_id) as socket:
        return (await _kernel_info(socket))["status"] == "ok"


@pytest.mark.parametrize(
    "spelling",
    [
        "voila/./render/models.ipynb",
        "voila/render/./models.ipynb",
        "voila/render/models.ipynb/",
        "voila//render/models.ipynb",
        "voila/render//models.ipynb",
        "voila/render/%2e/models.ipynb",
    ],
)
def test_another_spelling_of_a_page_starts_no_kernel_past_the_cap(live: Live, spelling: str) -> None:
    """Dot segments and doubled or trailing slashes reach the same page in Voilà (httpx and Tornado
    resolve them), so they were let through as not a page: a kernel each, past the cap."""
    with live.signed_in("analyst") as analyst:
        assert _raw_get(live, analyst, f"{LIVE_DASHBOARDS_PATH}/{spelling}") == 404  # was 200: a kernel


def _raw_get(live: Live, client: httpx.Client, path: str) -> int:
    """GET `path` exactly as written (httpx would resolve its dot segments first)."""
    address = urlsplit(live.web)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=120)
    try:
        connection.request("GET", path, headers={"Cookie": f"wb_session={client.cookies.get('wb_session')}"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_an_idle_live_kernel_is_shut_down_and_frees_its_slot(live: Live) -> None:
    with live.signed_in("analyst") as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/data_quality.ipynb"))

        async def stay_idle() -> float:
            started = time.monotonic()
            async with _socket(live, analyst, kernel_id) as socket:
                await _kernel_info(socket)
                with pytest.raises(ConnectionClosed):
                    while True:  # nothing sent: Voilà culls the kernel and the app closes the socket
                        await asyncio.wait_for(socket.recv(), 60)
            return time.monotonic() - started

        assert asyncio.run(stay_idle()) >= IDLE_SECONDS
        wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the idle kernel to be shut down")
        again = analyst.get(f"{RENDER}/overview.ipynb")  # the slot is free
        assert again.status_code == 200
        assert asyncio.run(_leave(live, analyst, _kernel_id(again)))


def test_a_socket_that_only_asks_for_kernel_info_is_closed_when_idle(live: Live) -> None:
    """Every message counted as activity, so a client sending kernel_info_request more often than
    the idle time kept its socket open for ever: Voilà culls the kernel (it does not count those),
    but the page's slot stayed taken, and the socket held, with no person using the page."""
    slots = live.app_state.live_kernels  # type: ignore[attr-defined]
    with live.signed_in("analyst") as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/data_quality.ipynb"))

        async def keep_asking() -> int:
            asked = 0
            async with _socket(live, analyst, kernel_id) as socket:

                async def ask() -> None:
                    nonlocal asked
                    while True:
                        await socket.send(_request("kernel_info_request"))
                        asked += 1
                        await asyncio.sleep(IDLE_SECONDS / 3)

                asking = asyncio.create_task(ask())
                try:
                    with pytest.raises(ConnectionClosed):
                        while True:  # replies, then nothing once Voilà culled the kernel
                            await socket.recv()
                finally:
                    asking.cancel()
                    await asyncio.gather(asking, return_exceptions=True)
            return asked

        # Asked all through the idle time, and closed all the same (was: still open a minute on).
        assert asyncio.run(asyncio.wait_for(keep_asking(), 10 * IDLE_SECONDS)) >= 3
        wait_for(lambda: slots.live == 0, 30, "the page's slot to be freed")


def test_a_viewer_changing_a_widget_keeps_the_page_open_past_the_idle_time(live: Live) -> None:
    """A widget's change reaches the kernel as a comm_msg: the viewer's activity."""
    with live.signed_in("analyst") as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        # To a comm the kernel does not have (it ignores it), as a dropdown's change is sent.
        change = {"comm_id": uuid.uuid4().hex, "data": {"method": "update", "state": {"value": "private"}}}

        async def use_the_page() -> dict:
            async with _socket(live, analyst, kernel_id) as socket:
                await _kernel_info(socket)
                for _ in range(5):  # 5 x IDLE_SECONDS / 3: well past the idle time
                    await socket.send(_request("comm_msg", change))
                    await asyncio.sleep(IDLE_SECONDS / 3)
                return await _kernel_info(socket)

        assert asyncio.run(use_the_page())["status"] == "ok"
        wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


def test_a_kernel_takes_a_page_and_its_reconnect_but_no_third_socket(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """Each socket to a kernel opens four ZMQ sockets in Voilà, and nothing bounded how many one
    client opened to one kernel."""
    caplog.set_level(logging.INFO, logger="web_app.routes.live_dashboards")
    with live.signed_in("analyst") as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        slots = live.app_state.live_kernels  # type: ignore[attr-defined]

        async def three_then_a_reconnect() -> tuple[int, str]:
            async with _socket(live, analyst, kernel_id) as page:
                async with _socket(live, analyst, kernel_id) as reconnect:
                    await _kernel_info(reconnect)
                    assert await _handshake(live, analyst, kernel_id) == 403  # was 101: relayed
                # The second closed (once the app has seen it go): its place is taken again.
                await asyncio.to_thread(wait_for, lambda: slots.sockets_to(kernel_id) == 1, 30, "a close")
                again = await _handshake(live, analyst, kernel_id)
                return again, (await _kernel_info(page))["status"]  # the page's own socket works on

        assert asyncio.run(three_then_a_reconnect()) == (101, "ok")
        refusals = [r for r in caplog.records if getattr(r, "kernel", None) == kernel_id]
        assert len(refusals) == 1, caplog.text
        wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


def test_a_page_that_never_connects_has_its_kernel_shut_down_and_its_place_freed(
    live: Live, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A viewer who leaves before the page opens its socket (or a client that never runs its
    script): its kernel was left to Voilà's culler, 11 minutes by default, its place held all
    along; at the cap of 1 here, every other analyst got the snapshot meanwhile."""
    monkeypatch.setattr(live.app_state.page_watch, "connect_seconds", CONNECT_SECONDS)  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO, logger="web_app.page_watch")
    with live.signed_in("analyst") as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        assert live.kernel_alive(kernel_id)
        busy = analyst.get(f"{RENDER}/models.ipynb")
        assert busy.status_code == 303 and busy.headers["location"] == "/dashboards/models?live=busy"
        wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the unconnected page's kernel to go")
        # Shut down by the app, once the page had gone unconnected for CONNECT_SECONDS, not culled.
        assert any(getattr(r, "kernel", None) == kernel_id for r in caplog.records), caplog.text
        again = analyst.get(f"{RENDER}/models.ipynb")
        assert again.status_code == 200
        assert asyncio.run(_leave(live, analyst, _kernel_id(again)))


def test_a_page_connected_through_another_web_process_keeps_its_kernel(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several web processes, a page may be sent by one and its socket go through another:
    the first must not take the page for unconnected and shut a kernel in use down. Here the
    socket goes to Voilà itself, which this app does not see either."""
    monkeypatch.setattr(live.app_state.page_watch, "connect_seconds", CONNECT_SECONDS)  # type: ignore[attr-defined]
    slots = live.app_state.live_kernels  # type: ignore[attr-defined]
    with live.signed_in("analyst") as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/schools.ipynb"))
        voila_socket = live.voila.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"

        async def elsewhere() -> bool:
            async with connect(f"{voila_socket}?session_id={uuid.uuid4()}", open_timeout=30) as socket:
                await _kernel_info(socket)
                # The app's check came, asked Voilà, and left the kernel be: its place here is free.
                await asyncio.to_thread(wait_for, lambda: slots.live == 0, 30, "the page's place to be freed")
                return live.kernel_alive(kernel_id) and (await _kernel_info(socket))["status"] == "ok"

        assert asyncio.run(elsewhere())
        wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be culled once idle")


def test_a_page_takes_no_theme_or_template_from_its_address(live: Live) -> None:
    """Voilà wrote `?theme=` into the page unescaped (HTML of the caller's choosing on this app's
    origin, and a kernel id the proxy would read as the page's) and let `?template=` pick any
    installed template."""
    with live.signed_in("analyst") as analyst:
        injected = '"><b id="injected">"kernelId": "00000000-0000-4000-8000-000000000000"</b>'
        page = analyst.get(f"{RENDER}/overview.ipynb", params={"theme": injected, "template": "reveal"})
        assert page.status_code == 200
        assert 'id="injected"' not in page.text and "00000000-0000-4000-8000-000000000000" not in page.text
        assert "reveal.js" not in page.text
        assert asyncio.run(_leave(live, analyst, _kernel_id(page)))


def test_with_voila_down_an_analyst_gets_the_snapshot(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = live.app_state.settings  # type: ignore[attr-defined]
    monkeypatch.setattr(settings, "voila_port", free_port())  # nothing listens there
    with live.signed_in("analyst") as analyst:
        down = analyst.get(f"{RENDER}/schools.ipynb")
        assert down.status_code == 303 and down.headers["location"] == "/dashboards/schools?live=down"
        assert "The live dashboards are not running" in analyst.get(down.headers["location"]).text
        assert analyst.get(f"{LIVE_DASHBOARDS_PATH}/voila/static/voila.js").status_code == 503
    assert live.app_state.live_kernels.live == 0  # type: ignore[attr-defined]


class CountingAccounts(AccountCache):
    """The app's account cache, counting the reads of one account (the socket's checks among them)."""

    def __init__(self, username: str) -> None:
        super().__init__(ttl=TTL)
        self.username = username
        self.reads = 0

    async def get(self, db: object, username: str) -> dict | None:  # type: ignore[override]
        self.reads += username == self.username
        return await super().get(db, username)  # type: ignore[arg-type]


@contextlib.contextmanager
def _swapped(live: Live, name: str, value: object) -> Iterator[None]:
    """`app.state.<name>` replaced meanwhile (monkeypatch would delete it after: `State` keeps its
    attributes out of the instance's `__dict__`)."""
    kept = getattr(live.app_state, name)
    setattr(live.app_state, name, value)
    try:
        yield
    finally:
        setattr(live.app_state, name, kept)


@pytest.fixture
def account(live: Live) -> Iterator[CountingAccounts]:
    """A new analyst of its own (the test changes it), and the app believing accounts for TTL only."""
    name = f"analyst_{uuid.uuid4().hex[:8]}"
    live.db.put_document(
        "users", name, {"scopes": ROLES["analyst"], "password_hash": _HASH, "disabled": False}
    )
    accounts = CountingAccounts(name)
    with _swapped(live, "accounts", accounts):
        yield accounts


def _change_account(live: Live, name: str, **changes: object) -> None:
    user = live.db.get_document("users", name)
    assert user is not None
    live.db.put_document("users", name, {**user, **changes})


async def _closed_when(
    live: Live, client: httpx.Client, kernel_id: str, change: Callable[[], object]
) -> tuple[int, str]:
    """The code and reason the app closes a live socket with, once `change` is made while it is open
    (nothing sent meanwhile: the idle time would close it too, with another code)."""
    async with _socket(live, client, kernel_id) as socket:
        await _kernel_info(socket)
        await asyncio.to_thread(change)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(2 * TTL + 30):  # a liveness bound, not a measure
                while True:
                    await socket.recv()
    assert closed.value.rcvd is not None, "the app closed the socket without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:2000]
    return found[1]


def test_a_disabled_analysts_open_socket_is_closed(
    live: Live, account: CountingAccounts, caplog: pytest.LogCaptureFixture
) -> None:
    """Pages refuse a disabled account within seconds, but its open kernel socket went on relaying
    (code run in the kernel) until its viewer left or was idle for WORKBENCH_VOILA_IDLE_SECONDS."""
    caplog.set_level(logging.INFO, logger="web_app")
    with live.signed_in(account.username) as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        disable = lambda: _change_account(live, account.username, disabled=True)  # noqa: E731
        code, reason = asyncio.run(_closed_when(live, analyst, kernel_id, disable))
    assert code == POLICY_VIOLATION and reason  # was 1001: closed when idle
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")
    wait_for(lambda: live.app_state.live_kernels.live == 0, 30, "the page's place to be freed")  # type: ignore[attr-defined]
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.kernel, r.account) for r in warned] == [(kernel_id, account.username)], caplog.text  # type: ignore[attr-defined]


def test_an_open_socket_is_closed_once_its_user_loses_the_analyst_scope(
    live: Live, account: CountingAccounts
) -> None:
    with live.signed_in(account.username) as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        demote = lambda: _change_account(live, account.username, scopes=["results:read"])  # noqa: E731
        code, reason = asyncio.run(_closed_when(live, analyst, kernel_id, demote))
    assert code == POLICY_VIOLATION and reason
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


def test_signing_out_closes_the_sessions_open_socket(live: Live, account: CountingAccounts) -> None:
    with live.signed_in(account.username) as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))

        def sign_out() -> None:
            response = analyst.post("/logout", data={"csrf": _csrf(analyst.get("/results"))})
            assert response.status_code == 303 and "wb_session" not in analyst.cookies

        code, reason = asyncio.run(_closed_when(live, analyst, kernel_id, sign_out))
    assert code == POLICY_VIOLATION and reason
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


async def _open_across_checks(
    live: Live,
    client: httpx.Client,
    kernel_id: str,
    checks: Callable[[], int],
    meanwhile: contextlib.AbstractContextManager[None] | None = None,
) -> str:
    """The kernel's answer through a socket kept open while its user is checked twice more (with
    `meanwhile` in force once it is open)."""
    async with _socket(live, client, kernel_id) as socket:
        await _kernel_info(socket)
        with meanwhile or contextlib.nullcontext():
            before = checks()
            await asyncio.to_thread(wait_for, lambda: checks() >= before + 2, 30, "two checks of the user")
            return (await _kernel_info(socket))["status"]


def test_a_socket_whose_user_stays_an_analyst_stays_open(live: Live, account: CountingAccounts) -> None:
    with live.signed_in(account.username) as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        checks = lambda: account.reads  # noqa: E731
        assert asyncio.run(_open_across_checks(live, analyst, kernel_id, checks)) == "ok"
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


class DbApiDown:
    """The app's db-api client while the db-api is unreachable: what `AccountCache` reads it with."""

    def __init__(self) -> None:
        self.asked = 0

    async def get_document(self, collection: str, key: str) -> dict | None:
        self.asked += 1
        raise DbApiCallError("127.0.0.1:1", grpc.StatusCode.UNAVAILABLE, "connection refused")


def test_a_socket_stays_open_while_its_users_check_cannot_be_answered(
    live: Live, account: CountingAccounts
) -> None:
    """A db-api outage must not cut every live session: the account was valid at its last check."""
    with live.signed_in(account.username) as analyst:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        down = DbApiDown()
        outage = _swapped(live, "db", down)
        assert asyncio.run(_open_across_checks(live, analyst, kernel_id, lambda: down.asked, outage)) == "ok"
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


def test_a_socket_whose_user_cannot_be_checked_for_long_is_closed_to_try_again_later(
    live: Live, account: CountingAccounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage that lasts does not keep a socket open on a check that never comes."""
    monkeypatch.setattr(live_dashboards, "UNCHECKED_SECONDS", 1.0)
    with live.signed_in(account.username) as analyst, contextlib.ExitStack() as outage:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        go_down = lambda: outage.enter_context(_swapped(live, "db", DbApiDown()))  # noqa: E731
        code, reason = asyncio.run(_closed_when(live, analyst, kernel_id, go_down))
    assert code == live_dashboards.TRY_AGAIN_LATER and "could not be checked" in reason
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


def test_another_analysts_socket_to_a_kernel_is_refused(live: Live, account: CountingAccounts) -> None:
    """A kernel id is in its page; an analyst who learnt another's took the page's socket places."""
    with live.signed_in("analyst") as analyst, live.signed_in(account.username) as other:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))
        assert _refused(live, other, kernel_id) == 403  # was 101: relayed to another's kernel

        async def twice() -> str:  # the page and its reconnect, both the owner's still
            async with _socket(live, analyst, kernel_id), _socket(live, analyst, kernel_id) as again:
                return (await _kernel_info(again))["status"]

        assert asyncio.run(twice()) == "ok"
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


def test_another_analyst_can_neither_shut_down_nor_inspect_a_kernel(
    live: Live, account: CountingAccounts
) -> None:
    """Voilà's kernel paths were forwarded for any analyst: one who learnt a kernel's id could shut
    another's page down (its post from a page of this site, as their own script can make it)."""
    with live.signed_in("analyst") as analyst, live.signed_in(account.username) as other:
        kernel_id = _kernel_id(analyst.get(f"{RENDER}/overview.ipynb"))

        async def attacked_while_open() -> list[httpx.Response]:
            async with _socket(live, analyst, kernel_id) as socket:
                await _kernel_info(socket)
                # What Voilà's page sends: the XSRF cookie and its copy in a header.
                other.cookies.set("_xsrf", "attacker-xsrf")
                xsrf = {"Origin": live.web, "X-XSRFToken": "attacker-xsrf"}
                attempts = [
                    other.post(f"{LIVE_DASHBOARDS_PATH}/voila/api/shutdown/{kernel_id}", headers=xsrf),
                    other.get(f"{LIVE_DASHBOARDS_PATH}/api/kernels/{kernel_id}"),
                ]
                assert (await _kernel_info(socket))["status"] == "ok"
                return attempts

        for refused in asyncio.run(attacked_while_open()):
            assert refused.status_code == 403 and "another account's" in refused.text, refused.text
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be shut down")


def test_a_kernel_no_page_of_this_app_started_is_nobodys(live: Live) -> None:
    """A kernel this process did not see a page of, and that no web process recorded, was relayed to
    any analyst who named it: here one started on Voilà itself, from this machine."""
    kernel_id = _kernel_id(httpx.get(f"{live.voila}/voila/render/overview.ipynb", timeout=120))
    with live.signed_in("analyst") as analyst:
        assert _refused(live, analyst, kernel_id) == 403  # was 101
    wait_for(lambda: not live.kernel_alive(kernel_id), 30, "the kernel to be culled once idle")
