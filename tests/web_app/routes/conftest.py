"""Fast route tests: the app from `create_app`, in process through FastAPI's TestClient, its
db-api client an in-memory `FakeDb`, parts swapped with `app.dependency_overrides`. No server, no
db-api: each test takes milliseconds. The end-to-end tests in `tests/web_app` keep the real ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipeline_lib.settings import Settings
from tests.web_app.routes.fake_db import FakeDb
from web_app.deps import CSRF_COOKIE, SESSION_COOKIE
from web_app.main import create_app
from web_app.security import create_access_token, csrf_token

SECRET = "fast-route-tests-jwt-secret-0123456789"
COOKIE_DOMAIN = "testserver.local"  # where the client keeps the app's cookies (http://testserver)
PROBLEM_JSON = "application/problem+json"


@dataclass
class FastApp:
    app: FastAPI
    http: TestClient
    db: FakeDb
    settings: Settings

    def account(self, username: str, scopes: list[str], **fields: object) -> None:
        """A user in the fake `users` collection (the app checks every token against its account)."""
        doc = {"scopes": scopes, "disabled": False, **fields}
        self.db.collections.setdefault("users", {})[username] = {**doc, "_id": username}

    def bearer(self, username: str, scopes: list[str]) -> dict[str, str]:
        """Headers with a token for a user holding `scopes` (the account made to match)."""
        self.account(username, scopes)
        return {"Authorization": f"Bearer {create_access_token(username, scopes, SECRET, 5)}"}

    def sign_in(self, username: str, scopes: list[str]) -> str:
        """A browser session for the user (the session cookie set); its token."""
        self.account(username, scopes)
        token = create_access_token(username, scopes, SECRET, 5)
        self.http.cookies.set(SESSION_COOKIE, token, domain=COOKIE_DOMAIN)
        return token

    def csrf(self) -> dict[str, str]:
        """A CSRF cookie in the client, and the form field that goes with it."""
        self.http.cookies.set(CSRF_COOKIE, "a-csrf-cookie-value", domain=COOKIE_DOMAIN)
        return {"csrf": csrf_token("a-csrf-cookie-value", SECRET)}


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[FastApp]:
    settings = Settings(
        data_dir=tmp_path,
        db_api_address="127.0.0.1:9",  # never called: the app's client is the fake
        jwt_secret=SECRET,  # type: ignore[arg-type]
        form_rate_limit="1000/minute",
        schedule_file=tmp_path / "crontab",
    )
    db = FakeDb()
    app = create_app(settings, connect=lambda _: db)  # type: ignore[arg-type, return-value]
    with TestClient(app, follow_redirects=False) as http:
        yield FastApp(app, http, db, settings)
    app.dependency_overrides.clear()


def is_problem(response: object, status: int) -> bool:
    """The response is an RFC 9457 problem with this status."""
    return (
        response.status_code == status  # type: ignore[attr-defined]
        and response.headers["content-type"] == PROBLEM_JSON  # type: ignore[attr-defined]
        and response.json()["status"] == status  # type: ignore[attr-defined]
    )
