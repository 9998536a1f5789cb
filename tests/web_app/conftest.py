"""A real web stack per test: the db-api on loopback (embedded store) and uvicorn serving the app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from db_api.server import RunningServer, start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.users import hash_password
from pipeline_lib.settings import Settings
from tests.conftest import TOKEN
from tests.wire_servers import free_port
from web_app.main import create_app
from web_app.security import create_access_token
from web_app.serving import uvicorn_options

PASSWORD = "correct horse battery"
ROLES = {
    "submitter": ["submit"],
    "reader": ["results:read"],
    "analyst": ["results:read", "analyst"],
    "admin": ["admin"],
}
# Hashing is slow on purpose; tests reuse one hash of the shared password.
_HASH = hash_password(PASSWORD)


@dataclass
class WebStack:
    url: str
    db: DbApiClient
    db_api: RunningServer
    settings: Settings
    app: FastAPI

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def token(self, role: str, scopes: list[str] | None = None) -> str:
        data = {"username": role, "password": PASSWORD, "scope": " ".join(scopes or [])}
        with self.client() as client:
            response = client.post("/api/v1/auth/token", data=data)
        response.raise_for_status()
        return response.json()["access_token"]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}

    def auth_offline(self, role: str) -> dict[str, str]:
        """A valid token made without asking the app (for when the db-api is down)."""
        secret = self.settings.jwt_secret.get_secret_value()  # type: ignore[union-attr]
        return {"Authorization": f"Bearer {create_access_token(role, ROLES[role], secret, 5)}"}


class ThreadedUvicorn(uvicorn.Server):
    """uvicorn in a thread of the test process: a real server on a real socket."""

    def install_signal_handlers(self) -> None:  # the test runner owns the signals
        pass

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not self.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return thread


def settings_for(tmp_path: Path, db_port: int, **overrides: object) -> Settings:
    defaults: dict[str, object] = {
        "data_dir": tmp_path,
        "db_api_address": f"127.0.0.1:{db_port}",
        "db_api_token": TOKEN,
        "jwt_secret": "test-jwt-secret-of-some-length-0123456789",
        "form_rate_limit": "1000/minute",
    }
    return Settings(**{**defaults, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def web_settings(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings for the app under test; parametrize indirectly to change them."""
    return getattr(request, "param", {})


@pytest.fixture
def stack(tmp_path: Path, web_settings: dict[str, object]) -> Iterator[WebStack]:
    db_api = start_server(SqliteStore(tmp_path / "store.sqlite3"), "127.0.0.1:0", token=TOKEN)
    settings = settings_for(tmp_path, db_api.port, **web_settings)
    db = DbApiClient(f"127.0.0.1:{db_api.port}", TOKEN)
    for name, scopes in ROLES.items():
        db.put_document("users", name, {"scopes": scopes, "password_hash": _HASH, "disabled": False})
    app = create_app(settings)
    port = free_port()
    # Served as `workbench web` serves it: the same event loop, and uvicorn believes the same proxies.
    options = uvicorn_options(settings.trusted_proxies, head_seconds=settings.upload_idle_seconds)
    server = ThreadedUvicorn(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options))
    thread = server.start_in_thread()
    yield WebStack(f"http://127.0.0.1:{port}", db, db_api, settings, app)
    server.should_exit = True
    thread.join(timeout=15)
    db.close()
    db_api.stop(grace=0)
