"""Web app replicas behave as one app: two apps, each with its own process state, in real uvicorn
servers over one db-api and one MongoDB wire server (SecantusDB). What one replica counted (form
posts, failed sign-ins) or ended (a session) holds on the other, because both keep it in the
MongoDB of `WORKBENCH_MONGO_URI`. Each app here would count alone on memory, so every test fails
if the counts were not shared. Then `workbench web --workers 2` as a user starts it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from db_api.server import start_server
from db_api.store.mongo import MongoStore
from pipeline_lib.cli.addresses import http_answers
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH
from tests import wire_servers
from tests.conftest import TOKEN
from tests.processes import children, running, stop_gracefully, wait_for
from tests.web_app.conftest import _HASH, PASSWORD, ROLES, ThreadedUvicorn, settings_for
from tests.web_app.routes.test_form_fast import GOOD
from tests.web_app.voila_server import running_voila
from tests.wire_servers import free_port
from web_app.main import create_app

pytestmark = [pytest.mark.slow, pytest.mark.mongo]

FORM_LIMIT = 4  # form posts per minute per client address


@dataclass
class Replicas:
    urls: list[str]
    folder: Path
    mongo_base: str  # the wire server's URI without a database
    db_api_port: int
    voila_port: int  # where both apps look for Voilà (started by the tests that want it)

    def uri(self, database: str) -> str:
        return f"{self.mongo_base}/{database}"


def _serve(app: object, port: int) -> tuple[ThreadedUvicorn, object]:
    server = ThreadedUvicorn(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    return server, server.start_in_thread()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    folder = tmp_path_factory.mktemp("replicas")
    wire = wire_servers.start_secantusdb(folder / "secantusdb")
    base = wire.uri.partition("?")[0].rstrip("/")
    uri = f"{base}/replicas"
    db_api = start_server(MongoStore(uri), "127.0.0.1:0", token=TOKEN)
    db = DbApiClient(f"127.0.0.1:{db_api.port}", TOKEN)
    for name, scopes in ROLES.items():
        db.put_document("users", name, {"scopes": scopes, "password_hash": _HASH, "disabled": False})
    servers = []
    voila_port = free_port()
    try:
        for _ in range(2):
            port = free_port()
            settings = settings_for(
                folder,
                db_api.port,
                mongo_uri=uri,
                form_rate_limit=f"{FORM_LIMIT}/minute",
                voila_port=voila_port,
            )
            servers.append((port, *_serve(create_app(settings), port)))
        urls = [f"http://127.0.0.1:{port}" for port, _, _ in servers]
        yield Replicas(urls, folder, base, db_api.port, voila_port)
    finally:
        for _, server, thread in servers:
            server.should_exit = True
            thread.join(timeout=15)
        db.close()
        db_api.stop(grace=0)
        wire.stop()


def _csrf(page: httpx.Response) -> str:
    return page.text.split('name="csrf" value="')[1].split('"')[0]


def _sign_in(http: httpx.Client, user: str, password: str = PASSWORD) -> httpx.Response:
    return http.post(
        "/login", data={"username": user, "password": password, "csrf": _csrf(http.get("/login"))}
    )


def test_a_session_signed_out_on_one_replica_is_refused_by_the_other(replicas: Replicas) -> None:
    first, second = replicas.urls
    with httpx.Client(base_url=first, timeout=30) as http:
        assert _sign_in(http, "reader").status_code == 303
        session = http.cookies["wb_session"]
        with httpx.Client(base_url=second, cookies={"wb_session": session}, timeout=30) as other:
            assert other.get("/results").status_code == 200  # one signing key for both
            assert http.post("/logout", data={"csrf": _csrf(http.get("/results"))}).status_code == 303
            refused = other.get("/results")
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")


def test_form_posts_are_counted_once_across_replicas(replicas: Replicas) -> None:
    statuses = []
    for n in range(FORM_LIMIT + 2):
        with httpx.Client(base_url=replicas.urls[n % 2], timeout=30) as http:
            page = http.get("/")
            response = http.post("/", data={**GOOD, "nonce": f"replica-post-{n}", "csrf": _csrf(page)})
            statuses.append(response.status_code)
    # Each replica saw 3 posts, under the limit of 4 were it counting alone.
    assert statuses == [303] * FORM_LIMIT + [429, 429], statuses


def test_failed_sign_ins_back_off_across_replicas(replicas: Replicas) -> None:
    failures = []
    for n in range(6):  # 5 failures per account are free; 3 land on each replica
        with httpx.Client(base_url=replicas.urls[n % 2], timeout=30) as http:
            failures.append(_sign_in(http, "submitter", f"wrong {n}").status_code)
    assert failures == [401] * 6, failures
    with httpx.Client(base_url=replicas.urls[0], timeout=30) as http:
        refused = _sign_in(http, "submitter")  # the right password, not even checked
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text


def test_an_unreachable_limits_store_answers_503_and_lets_nothing_through(replicas: Replicas) -> None:
    nowhere = f"mongodb://127.0.0.1:{free_port()}/limits"
    settings = settings_for(replicas.folder, replicas.db_api_port, limits_uri=nowhere)
    port = free_port()
    server, thread = _serve(create_app(settings), port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            page = http.get("/")
            assert page.status_code == 200  # no count needed to show the form
            started = time.monotonic()
            posted = http.post("/", data={**GOOD, "nonce": "no-limits-store", "csrf": _csrf(page)})
            waited = time.monotonic() - started
            sign_in = _sign_in(http, "reader")
            assert http.get("/healthz").status_code == 200  # the event loop was never held
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert posted.status_code == 503 and posted.headers["retry-after"] == "5", posted.text
    assert "shared counters are unavailable" in posted.json()["title"]
    assert waited < 30, f"the post waited {waited:.1f} s for the missing store"
    assert sign_in.status_code == 503


@pytest.fixture(scope="module")
def voila(replicas: Replicas) -> Iterator[str]:
    """Voilà, which both apps proxy live dashboards to, as `workbench up` starts one for all."""
    web_port = int(replicas.urls[0].rpartition(":")[2])
    with running_voila(replicas.folder, replicas.db_api_port, replicas.voila_port, web_port) as url:
        yield url


async def _handshake(url: str, session: str, kernel_id: str) -> int:
    """The status a replica answers a live page's kernel socket with (101: accepted, relayed)."""
    socket = url.replace("http", "ws", 1) + f"{LIVE_DASHBOARDS_PATH}/api/kernels/{kernel_id}/channels"
    headers = {"Origin": url, "Cookie": f"wb_session={session}"}
    try:
        async with connect(
            socket + f"?session_id={uuid.uuid4()}",
            additional_headers=headers,
            open_timeout=30,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_a_live_kernel_is_its_pages_account_on_every_replica(replicas: Replicas, voila: str) -> None:
    """Each replica knew only the kernels of pages it sent: another analyst who learnt a kernel's id
    had its socket relayed, and could shut it down, through the other replica."""
    first, second = replicas.urls
    sessions = {}
    for user in ("analyst", "admin"):
        with httpx.Client(base_url=first, timeout=30) as http:
            assert _sign_in(http, user).status_code == 303
            sessions[user] = http.cookies["wb_session"]
    with httpx.Client(base_url=first, cookies={"wb_session": sessions["analyst"]}, timeout=120) as owner:
        page = owner.get(f"{LIVE_DASHBOARDS_PATH}/voila/render/overview.ipynb")
    assert page.status_code == 200, page.text[:2000]
    found = re.search(r'"kernelId": *"([0-9a-f-]{36})"', page.text)
    assert found, page.text[:2000]
    kernel_id = found[1]
    assert asyncio.run(_handshake(second, sessions["admin"], kernel_id)) == 403  # was 101
    with httpx.Client(base_url=second, cookies={"wb_session": sessions["admin"]}, timeout=30) as other:
        other.cookies.set("_xsrf", "attacker-xsrf")
        shut = other.post(
            f"{LIVE_DASHBOARDS_PATH}/voila/api/shutdown/{kernel_id}",
            headers={"Origin": second, "X-XSRFToken": "attacker-xsrf"},
        )
    assert shut.status_code == 403 and "another account's" in shut.text, shut.text
    assert httpx.get(f"{voila}/api/kernels/{kernel_id}", timeout=10).status_code == 200
    # The page's own account reaches it through either replica.
    assert asyncio.run(_handshake(second, sessions["analyst"], kernel_id)) == 101
    assert asyncio.run(_handshake(second, sessions["admin"], str(uuid.uuid4()))) == 403  # no page's


def test_workbench_web_serves_with_two_workers_sharing_one_store(replicas: Replicas) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{replicas.db_api_port}",
        WORKBENCH_DB_API_TOKEN=TOKEN,
        WORKBENCH_DATA_DIR=str(replicas.folder / "workers"),
        WORKBENCH_MONGO_URI=replicas.uri("workers"),
        WORKBENCH_FORM_RATE_LIMIT="3/minute",
    )
    log = replicas.folder / "workers.log"
    with log.open("wb") as sink:
        web = subprocess.Popen(
            [sys.executable, "-m", "pipeline_lib.cli", "web", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: web.poll() is not None or http_answers(f"{url}/healthz"), 90, "workbench web --workers 2"
        )
        assert web.poll() is None, log.read_text()[-3000:]
        wait_for(lambda: len(children(web.pid, b"spawn_main")) == 2, 60, "two workers")
        workers = children(web.pid, b"spawn_main")
        statuses = []
        for n in range(6):  # a new connection each time, so the kernel hands them to either worker
            with httpx.Client(base_url=url, timeout=30) as http:
                page = http.get("/")
                statuses.append(
                    http.post("/", data={**GOOD, "nonce": f"w{n}", "csrf": _csrf(page)}).status_code
                )
        assert statuses == [303] * 3 + [429] * 3, statuses
        # A session from the generated key (in the data dir, made once before the workers started)
        # holds on every worker: ten fresh connections, none sent to sign in.
        with httpx.Client(base_url=url, timeout=30) as http:
            assert _sign_in(http, "analyst").status_code == 303
            session = http.cookies["wb_session"]
        for _ in range(10):
            with httpx.Client(base_url=url, cookies={"wb_session": session}, timeout=30) as other:
                assert other.get("/results").status_code == 200
    finally:
        stop_gracefully(web)
    wait_for(lambda: not any(running(pid) for pid in workers), 30, "the workers to end with `workbench web`")
