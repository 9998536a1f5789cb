"""Sessions end when they should, on a live stack.

- A token is only as good as its account now: once a user is disabled or deleted, their old
  token is refused (401) within the account cache's lifetime (5 s; shortened here through its
  constructor); a scope taken away is no longer granted (403).
- Signing out needs the page's CSRF token, and ends the session's token, not just the cookie.
- Cookies are `Secure` when people reach the app over HTTPS (an https public URL, or a trusted
  proxy saying so), and not otherwise.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.web_app.conftest import PASSWORD, WebStack
from web_app.accounts import AccountCache

TTL = 0.3  # seconds the app may still believe an account it read


@pytest.fixture
def short_ttl(stack: WebStack) -> WebStack:
    stack.app.state.accounts = AccountCache(ttl=TTL)
    return stack


def _after_the_ttl() -> None:
    time.sleep(TTL + 0.2)


def _results(stack: WebStack, headers: dict[str, str]) -> int:
    with stack.client() as http:
        return http.get("/api/v1/results", headers=headers).status_code


def _account(stack: WebStack, role: str) -> dict:
    user = stack.db.get_document("users", role)
    assert user is not None
    return user


def test_a_disabled_users_old_token_is_refused(short_ttl: WebStack) -> None:
    stack = short_ttl
    headers = stack.auth("reader")
    assert _results(stack, headers) == 200
    stack.db.put_document("users", "reader", {**_account(stack, "reader"), "disabled": True})
    _after_the_ttl()
    assert _results(stack, headers) == 401


def test_a_deleted_users_old_token_is_refused(short_ttl: WebStack) -> None:
    stack = short_ttl
    headers = stack.auth("reader")
    assert _results(stack, headers) == 200
    stack.db.delete_ids("users", ["reader"])
    assert stack.db.get_document("users", "reader") is None
    _after_the_ttl()
    assert _results(stack, headers) == 401


def test_a_scope_taken_away_is_no_longer_granted(short_ttl: WebStack) -> None:
    stack = short_ttl
    headers = stack.auth("analyst")
    assert _results(stack, headers) == 200
    stack.db.put_document("users", "analyst", {**_account(stack, "analyst"), "scopes": ["analyst"]})
    _after_the_ttl()
    assert _results(stack, headers) == 403


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, "the page carries a CSRF field"
    return match.group(1)


@contextmanager
def _signed_in(stack: WebStack, role: str) -> Iterator[httpx.Client]:
    with stack.client() as http:
        data = {"username": role, "password": PASSWORD, "csrf": _csrf(http.get("/login")), "next": "/results"}
        response = http.post("/login", data=data)
        assert response.status_code == 303, response.text
        yield http


def test_a_disabled_users_session_goes_back_to_the_login_page(short_ttl: WebStack) -> None:
    stack = short_ttl
    with _signed_in(stack, "reader") as http:
        assert http.get("/results").status_code == 200
        stack.db.put_document("users", "reader", {**_account(stack, "reader"), "disabled": True})
        _after_the_ttl()
        response = http.get("/results")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_sign_out_without_the_csrf_token_is_refused(stack: WebStack) -> None:
    with _signed_in(stack, "reader") as http:
        forged = http.post("/logout")
        assert forged.status_code == 403
        assert "wb_session" in http.cookies
        assert http.get("/results").status_code == 200
        # The refusal asks to confirm, with a form of this site's own.
        confirmed = http.post("/logout", data={"csrf": _csrf(forged)})
        assert confirmed.status_code == 303 and "wb_session" not in http.cookies


def test_sign_out_ends_the_sessions_token_not_only_the_cookie(stack: WebStack) -> None:
    with _signed_in(stack, "reader") as http:
        token = http.cookies["wb_session"]
        signed_out = http.post("/logout", data={"csrf": _csrf(http.get("/results"))})
        assert signed_out.status_code == 303
        assert "wb_session" not in http.cookies
    with stack.client(cookies={"wb_session": token}) as replay:
        assert replay.get("/results").status_code == 303


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def _cookie_headers(stack: WebStack, **headers: str) -> dict[str, str]:
    """The Set-Cookie headers of a login page, of signing in and of signing out. The cookies go
    back by hand: a client sends no Secure cookie over plain http, as the app is tested here."""
    jar: dict[str, str] = {}
    seen: dict[str, str] = {}

    def send(method: str, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        cookie = "; ".join(f"{name}={value}" for name, value in jar.items())
        with stack.client(headers={**headers, "Cookie": cookie}) as http:
            response = http.request(method, path, data=data)
        for name, header in _set_cookies(response).items():
            jar[name] = header.split(";", 1)[0].split("=", 1)[1]
            seen[name if name not in seen else f"{name} (again)"] = header
        return response

    page = send("GET", "/login")
    data = {"username": "reader", "password": PASSWORD, "csrf": _csrf(page), "next": "/results"}
    assert send("POST", "/login", data).status_code == 303
    assert send("POST", "/logout", {"csrf": _csrf(send("GET", "/results"))}).status_code == 303
    assert set(seen) == {"wb_csrf", "wb_session", "wb_session (again)"}, seen
    return seen


def _secure(header: str) -> bool:
    return "secure" in [part.strip().lower() for part in header.split(";")]


@pytest.mark.parametrize(
    "web_settings",
    [{"public_url": "https://workbench.example.org/"}],
    indirect=True,
)
def test_cookies_are_secure_when_the_public_url_is_https(stack: WebStack) -> None:
    cookies = _cookie_headers(stack)
    assert all(_secure(header) for header in cookies.values()), cookies
    assert all("httponly" in header.lower() for header in cookies.values()), cookies


@pytest.mark.parametrize(
    "web_settings", [{}, {"public_url": "http://workbench.example.org/"}], indirect=True, ids=["none", "http"]
)
def test_cookies_are_not_secure_over_plain_http(stack: WebStack) -> None:
    cookies = _cookie_headers(stack)
    assert not any(_secure(header) for header in cookies.values()), cookies


@pytest.mark.parametrize("web_settings", [{"trusted_proxies": "127.0.0.1"}], indirect=True)
def test_cookies_are_secure_when_a_trusted_proxy_says_https(stack: WebStack) -> None:
    cookies = _cookie_headers(stack, **{"X-Forwarded-Proto": "https"})
    assert all(_secure(header) for header in cookies.values()), cookies


def test_an_untrusted_x_forwarded_proto_changes_nothing(stack: WebStack) -> None:
    cookies = _cookie_headers(stack, **{"X-Forwarded-Proto": "https"})
    assert not any(_secure(header) for header in cookies.values()), cookies
