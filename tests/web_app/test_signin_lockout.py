"""Someone else's failed sign-ins never lock an account's owner out of the address they sign in
from, on a live stack behind a proxy.

An attacker sending wrong passwords for `admin` backs off (the account from that address, that
address, and the account from anywhere), while the owner signing in from an address they signed
in from before gets in, on the API and on the login page alike; the attacker stays throttled.
Per-client counts key an IPv6 client by its /64 (every IPv6 customer holds at least one), so
addresses rotated within one /64 share one back-off.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.web_app.conftest import PASSWORD, WebStack
from tests.web_app.test_auth_limits import _assert_throttled, _token

BEHIND_A_PROXY = {"trusted_proxies": "127.0.0.1"}
ATTACKER, OWNER = "203.0.113.9", "198.51.100.7"


def _fail_until_refused(http: httpx.Client, username: str, client: str) -> list[int]:
    """Wrong passwords for `username` from `client` until one is refused; the statuses."""
    statuses: list[int] = []
    while len(statuses) < 15 and 429 not in statuses:
        statuses.append(_token(http, username, f"wrong {len(statuses)}", client=client).status_code)
    assert statuses[-1] == 429, statuses
    return statuses


def _login_form(http: httpx.Client, username: str, password: str, client: str) -> httpx.Response:
    page = http.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    data = {"username": username, "password": password, "csrf": csrf.group(1), "next": "/results"}
    return http.post("/login", data=data, headers={"X-Forwarded-For": client})


@pytest.mark.parametrize("web_settings", [BEHIND_A_PROXY], indirect=True)
def test_an_attacker_backing_off_does_not_lock_the_owner_out_of_the_token_endpoint(stack: WebStack) -> None:
    with stack.client() as http:
        assert _token(http, "admin", PASSWORD, client=OWNER).status_code == 200  # yesterday, say
        _fail_until_refused(http, "admin", ATTACKER)
        owner = _token(http, "admin", PASSWORD, client=OWNER)
    assert owner.status_code == 200, owner.text


@pytest.mark.parametrize("web_settings", [BEHIND_A_PROXY], indirect=True)
def test_an_attacker_backing_off_does_not_lock_the_owner_out_of_the_login_page(stack: WebStack) -> None:
    with stack.client() as http:
        assert _login_form(http, "admin", PASSWORD, OWNER).status_code == 303
        http.cookies.clear()
        _fail_until_refused(http, "admin", ATTACKER)
        owner = _login_form(http, "admin", PASSWORD, OWNER)
    assert owner.status_code == 303, owner.text
    assert "wb_session" in http.cookies


@pytest.mark.parametrize("web_settings", [BEHIND_A_PROXY], indirect=True)
def test_the_attacker_stays_throttled_after_the_owner_signs_in(stack: WebStack) -> None:
    with stack.client() as http:
        assert _token(http, "admin", PASSWORD, client=OWNER).status_code == 200
        _fail_until_refused(http, "admin", ATTACKER)
        assert _token(http, "admin", PASSWORD, client=OWNER).status_code == 200
        _assert_throttled(_token(http, "admin", "one more guess", client=ATTACKER))
        # Not even the right password is checked from the attacker's address while it backs off.
        _assert_throttled(_token(http, "admin", PASSWORD, client=ATTACKER))


@pytest.mark.parametrize("web_settings", [BEHIND_A_PROXY], indirect=True)
def test_addresses_in_one_ipv6_64_share_a_sign_in_back_off(stack: WebStack) -> None:
    with stack.client() as http:
        _fail_until_refused(http, "admin", "2001:db8::1")
        same_64 = _token(http, "admin", PASSWORD, client="2001:db8::2")
        next_64 = _token(http, "admin", PASSWORD, client="2001:db8:0:1::1")
    _assert_throttled(same_64)
    assert next_64.status_code == 200, next_64.text


@pytest.mark.parametrize("web_settings", [BEHIND_A_PROXY], indirect=True)
def test_an_ipv4_mapped_ipv6_address_shares_the_ipv4_addresses_back_off(stack: WebStack) -> None:
    with stack.client() as http:
        _fail_until_refused(http, "admin", "203.0.113.20")
        mapped = _token(http, "admin", PASSWORD, client="::ffff:203.0.113.20")
    _assert_throttled(mapped)
