"""Web app replicas behave as one app: two apps, each with its own process state, in real uvicorn
servers over one db-api and one MongoDB wire server (SecantusDB). What one replica counted (form
posts, failed sign-ins) or ended (a session) holds on the other, because both keep it in the
MongoDB of `WORKBENCH_MONGO_URI`. Each app here would count alone on memory, so every test fails
if the counts were not shared. Then `workbench web --workers 2` as a user starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from db_api.server import start_server
from db_api.store.mongo import MongoStore
from pipeline_lib.cli.addresses import http_answers
from pipeline_lib.client.sync import DbApiClient
from tests import wire_servers
from tests.conftest import TOKEN
from tests.processes import children, running, stop_gracefully, wait_for
from tests.web_app.conftest import _HASH, PASSWORD, ROLES, ThreadedUvicorn, settings_for
from tests.web_app.routes.test_form_fast import GOOD
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
    try:
        for _ in range(2):
            port = free_port()
            settings = settings_for(
                folder, db_api.port, mongo_uri=uri, form_rate_limit=f"{FORM_LIMIT}/minute"
            )
            servers.append((port, *_serve(create_app(settings), port)))
        yield Replicas([f"http://127.0.0.1:{port}" for port, _, _ in servers], folder, base, db_api.port)
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
