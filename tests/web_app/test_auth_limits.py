"""Sign-in against hostile clients, on a live stack: guessing is throttled, checking is bounded.

- Wrong passwords for one account earn an exponential back-off: 429 with Retry-After, the
  password not even checked; after the wait the right password works, and other accounts are
  never affected. The same holds for the login page.
- One client failing on many accounts backs off as a client; other clients sign in as usual.
- Password checks (argon2, ~64 MiB and a core each) run a few at a time, off the event loop:
  beyond that a sign-in is answered 503 with Retry-After at once, never queued, and the app
  keeps answering everything else.
"""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from tests.web_app.conftest import PASSWORD, WebStack

TOKEN_PATH = "/api/v1/auth/token"
BEHIND_A_PROXY = {"trusted_proxies": "127.0.0.1"}


def _token(http: httpx.Client, username: str, password: str, client: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": client} if client else {}
    return http.post(TOKEN_PATH, data={"username": username, "password": password}, headers=headers)


def _retry_after(response: httpx.Response) -> int:
    seconds = int(response.headers["retry-after"])
    assert seconds > 0
    return seconds


def _assert_throttled(response: httpx.Response, status: int = 429) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    _retry_after(response)


def test_wrong_passwords_for_one_account_earn_429_with_retry_after(stack: WebStack) -> None:
    with stack.client() as http:
        answers = [_token(http, "admin", f"wrong {n}") for n in range(15)]
        statuses = [a.status_code for a in answers]
        assert statuses[0] == 401 and statuses[-1] == 429, statuses
        checked = statuses.count(401)
        assert checked <= 7, f"{checked} passwords checked in a burst of 15: no back-off"
        assert statuses[checked:] == [429] * (15 - checked), "once backing off, every guess is refused"
        _assert_throttled(answers[-1])
        # While it backs off, not even the right password is checked.
        _assert_throttled(_token(http, "admin", PASSWORD))
        time.sleep(_retry_after(answers[-1]) + 0.2)
        assert _token(http, "admin", PASSWORD).status_code == 200


def test_another_account_is_unaffected_by_one_backing_off(stack: WebStack) -> None:
    with stack.client() as http:
        for n in range(15):
            _token(http, "admin", f"wrong {n}")
        _assert_throttled(_token(http, "admin", "wrong again"))
        reader = _token(http, "reader", PASSWORD)
    assert reader.status_code == 200, reader.text


def _login_form(http: httpx.Client, username: str, password: str) -> httpx.Response:
    page = http.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    data = {"username": username, "password": password, "csrf": csrf.group(1), "next": "/results"}
    return http.post("/login", data=data)


def test_the_login_page_backs_off_the_same_way(stack: WebStack) -> None:
    with stack.client() as http:
        answers = [_login_form(http, "analyst", f"wrong {n}") for n in range(15)]
        statuses = [a.status_code for a in answers]
        assert statuses[0] == 401 and statuses[-1] == 429, statuses
        last = answers[-1]
        assert "Too many failed sign-ins" in last.text and "wb_session" not in http.cookies
        time.sleep(_retry_after(last) + 0.2)
        signed_in = _login_form(http, "analyst", PASSWORD)
    assert signed_in.status_code == 303, signed_in.text
    assert "wb_session" in http.cookies


@pytest.mark.parametrize("web_settings", [BEHIND_A_PROXY], indirect=True)
def test_one_client_failing_on_many_accounts_backs_off_while_other_clients_sign_in(stack: WebStack) -> None:
    guesser, neighbour = "203.0.113.5", "203.0.113.6"
    with stack.client() as http:
        statuses = []
        for n in range(60):  # a new account name each time: no account backs off, the client does
            statuses.append(_token(http, f"user{n}", "guess", client=guesser).status_code)
            if statuses[-1] != 401:
                break
        refused = _token(http, "reader", PASSWORD, client=guesser)
        other = _token(http, "reader", PASSWORD, client=neighbour)
    assert statuses[-1] == 429, statuses
    assert len(statuses) <= 30, f"{len(statuses) - 1} failures before the client backed off"
    _assert_throttled(refused)
    assert other.status_code == 200, other.text


def test_concurrent_password_checks_are_bounded_while_the_app_keeps_answering(stack: WebStack) -> None:
    callers = 40
    start = threading.Barrier(callers)
    answers: list[httpx.Response] = []

    def sign_in() -> None:
        with stack.client() as http:
            start.wait()
            answers.append(_token(http, "admin", PASSWORD))

    threads = [threading.Thread(target=sign_in) for _ in range(callers)]
    for thread in threads:
        thread.start()
    health = []
    with stack.client() as http:
        while any(thread.is_alive() for thread in threads):
            health.append(http.get("/healthz").status_code)
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) == {200, 503}, statuses
    for busy in (a for a in answers if a.status_code == 503):
        _assert_throttled(busy, 503)
    assert health and set(health) == {200}
