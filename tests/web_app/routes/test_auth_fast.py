"""Sign-in and sign-out route logic, in process (see conftest): the token endpoint's answers,
throttling, the login page's CSRF check and redirects, sign-out that revokes the token."""

from __future__ import annotations

import functools

import pytest
from limits.storage import MemoryStorage

from pipeline_lib.contract.users import hash_password
from tests.web_app.routes.conftest import SECRET, FastApp, is_problem
from web_app.deps import SESSION_COOKIE, get_sign_in_guard
from web_app.security import decode_access_token
from web_app.signin_guard import SignInGuard

PASSWORD = "correct horse battery"


@functools.cache
def _hash() -> str:  # slow on purpose: made once for every test here
    return hash_password(PASSWORD)


@pytest.fixture
def rita(fast: FastApp) -> FastApp:
    """The app with one account, `rita`, who reads results."""
    fast.account("rita", ["results:read"], password_hash=_hash())
    return fast


def _token(fast: FastApp, password: str = PASSWORD, scope: str = "", username: str = "rita"):
    data = {"username": username, "password": password, "scope": scope}
    return fast.http.post("/api/v1/auth/token", data=data)


def test_the_right_password_gets_a_token_with_the_accounts_scopes(rita: FastApp) -> None:
    response = _token(rita)
    assert response.status_code == 200
    body = response.json()
    assert (
        body["scopes"] == ["results:read"] and body["expires_in"] == rita.settings.access_token_minutes * 60
    )
    claims = decode_access_token(body["access_token"], SECRET)
    assert claims is not None and claims.username == "rita"


@pytest.mark.parametrize(("username", "password"), [("rita", "wrong"), ("nobody", PASSWORD)])
def test_a_wrong_password_or_account_is_a_401_problem(rita: FastApp, username: str, password: str) -> None:
    response = _token(rita, password, username=username)
    assert is_problem(response, 401) and response.headers["www-authenticate"] == "Bearer"


def test_a_scope_the_account_does_not_hold_is_refused_with_400(rita: FastApp) -> None:
    assert is_problem(_token(rita, scope="admin"), 400)
    assert _token(rita, scope="results:read admin").json()["scopes"] == ["results:read"]


def test_a_client_backing_off_is_refused_with_429_and_retry_after(rita: FastApp) -> None:
    guard = SignInGuard(MemoryStorage(), free_per_account_and_client=0)
    rita.app.dependency_overrides[get_sign_in_guard] = lambda: guard
    assert _token(rita, "wrong").status_code == 401
    refused = _token(rita)  # the right password, but the account waits from this client after a failure
    assert is_problem(refused, 429) and int(refused.headers["retry-after"]) >= 1


def test_a_sign_in_when_every_password_check_is_taken_is_a_503(rita: FastApp) -> None:
    guard = SignInGuard(MemoryStorage(), max_checks=1)
    rita.app.dependency_overrides[get_sign_in_guard] = lambda: guard
    with guard.password_check():  # another sign-in holds the only slot
        refused = _token(rita)
    assert is_problem(refused, 503) and refused.headers["retry-after"] == "1"


def test_the_login_form_without_its_csrf_token_signs_nobody_in(rita: FastApp) -> None:
    rita.csrf()
    response = rita.http.post("/login", data={"username": "rita", "password": PASSWORD, "csrf": "forged"})
    assert response.status_code == 403 and "The form expired: try again." in response.text
    assert SESSION_COOKIE not in rita.http.cookies


def test_an_overlong_csrf_field_on_the_login_form_is_invalid(rita: FastApp) -> None:
    response = rita.http.post("/login", data={"username": "rita", "password": PASSWORD, "csrf": "x" * 201})
    assert is_problem(response, 422)


@pytest.mark.parametrize(
    ("next_path", "location"),
    [("/runs", "/runs"), ("//evil.example/", "/results"), ("https://evil.example/", "/results")],
)
def test_the_login_form_sets_the_session_and_redirects_on_this_site_only(
    rita: FastApp, next_path: str, location: str
) -> None:
    data = {"username": "rita", "password": PASSWORD, "next": next_path, **rita.csrf()}
    response = rita.http.post("/login", data=data)
    assert response.status_code == 303 and response.headers["location"] == location
    assert SESSION_COOKIE in rita.http.cookies


def test_the_login_form_explains_a_wrong_password(rita: FastApp) -> None:
    response = rita.http.post("/login", data={"username": "rita", "password": "nope", **rita.csrf()})
    assert response.status_code == 401 and "Incorrect username or password." in response.text


def test_the_login_form_says_how_long_to_wait_while_backing_off(rita: FastApp) -> None:
    guard = SignInGuard(MemoryStorage(), free_per_account_and_client=0)
    rita.app.dependency_overrides[get_sign_in_guard] = lambda: guard
    rita.http.post("/login", data={"username": "rita", "password": "nope", **rita.csrf()})
    response = rita.http.post("/login", data={"username": "rita", "password": PASSWORD, **rita.csrf()})
    assert response.status_code == 429 and "Too many failed sign-ins" in response.text
    assert response.headers["retry-after"]


def test_sign_out_without_the_csrf_token_asks_to_confirm(rita: FastApp) -> None:
    rita.sign_in("rita", ["results:read"])
    response = rita.http.post("/logout")
    assert response.status_code == 403 and "did not come from this site" in response.text
    assert SESSION_COOKIE in rita.http.cookies


def test_sign_out_revokes_the_sessions_token(rita: FastApp) -> None:
    token = rita.sign_in("rita", ["results:read"])
    response = rita.http.post("/logout", data=rita.csrf())
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert SESSION_COOKIE not in rita.http.cookies
    reused = rita.http.get("/api/v1/results", headers={"Authorization": f"Bearer {token}"})
    assert is_problem(reused, 401)
