"""Whose address a request counts as: the connection's, unless it comes from a configured proxy.

The form's per-client rate limit counts that address. A client that sends its own
`X-Forwarded-For` must not become someone new with every request; behind a proxy named in
`WORKBENCH_TRUSTED_PROXIES` the address the proxy saw is believed (the rightmost one no trusted
proxy added), whichever server runs the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.web_app.conftest import ThreadedUvicorn, WebStack, settings_for
from tests.web_app.test_form import GOOD, _open_form
from tests.wire_servers import free_port
from web_app.client_address import ClientAddressMiddleware, client_key, parse_trusted_proxies
from web_app.main import create_app

TWO_PER_MINUTE = {"form_rate_limit": "2/minute"}


def _send_form(http: httpx.Client, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return http.post("/", data={**GOOD, **_open_form(http)}, headers=headers).status_code


@pytest.mark.parametrize("web_settings", [TWO_PER_MINUTE], indirect=True)
def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_does_not_reset_the_form_limit(
    stack: WebStack,
) -> None:
    with stack.client() as http:
        statuses = [_send_form(http) for _ in range(2)]
        spoofed = [_send_form(http, f"203.0.113.{n}") for n in range(1, 4)]
    assert statuses == [303, 303]
    assert spoofed == [429, 429, 429]
    assert stack.db.count("raw") == 2


@pytest.mark.parametrize("web_settings", [{**TWO_PER_MINUTE, "trusted_proxies": "127.0.0.1"}], indirect=True)
def test_x_forwarded_for_from_a_trusted_proxy_is_believed(stack: WebStack) -> None:
    with stack.client() as http:
        first_client = [_send_form(http, "203.0.113.7") for _ in range(3)]
        # Entries left of the one the proxy added are the client's own words: not believed.
        prepended = _send_form(http, "198.51.100.1, 203.0.113.7")
        second_client = _send_form(http, "203.0.113.8")
    assert first_client == [303, 303, 429]
    assert prepended == 429
    assert second_client == 303


@pytest.mark.parametrize("web_settings", [{**TWO_PER_MINUTE, "trusted_proxies": "127.0.0.1"}], indirect=True)
def test_addresses_in_one_ipv6_64_share_the_form_limit(stack: WebStack) -> None:
    with stack.client() as http:
        first_address = [_send_form(http, "2001:db8::1") for _ in range(2)]
        same_64 = _send_form(http, "2001:db8::2")  # a fresh address, the same customer's /64
        next_64 = _send_form(http, "2001:db8:0:1::1")
    assert first_address == [303, 303]
    assert same_64 == 429
    assert next_64 == 303


@pytest.mark.parametrize("web_settings", [{**TWO_PER_MINUTE, "trusted_proxies": "127.0.0.1"}], indirect=True)
def test_ipv4_addresses_count_one_by_one_and_as_themselves_when_ipv4_mapped(stack: WebStack) -> None:
    with stack.client() as http:
        first_address = [_send_form(http, "203.0.113.7") for _ in range(2)]
        mapped = _send_form(http, "::ffff:203.0.113.7")
        neighbour = _send_form(http, "203.0.113.8")
    assert first_address == [303, 303]
    assert mapped == 429
    assert neighbour == 303


@contextmanager
def _served_without_server_proxy_handling(
    tmp_path: Path, stack: WebStack, **settings: object
) -> Iterator[str]:
    """The app under a server that leaves X-Forwarded-For alone (uvicorn --no-proxy-headers)."""
    app = create_app(settings_for(tmp_path, stack.db_api.port, **settings))
    port = free_port()
    server = ThreadedUvicorn(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    )
    thread = server.start_in_thread()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_the_app_applies_its_trusted_proxies_whatever_server_runs_it(tmp_path: Path, stack: WebStack) -> None:
    settings = {**TWO_PER_MINUTE, "trusted_proxies": "10.0.0.0/8, 127.0.0.0/8"}
    served = _served_without_server_proxy_handling(tmp_path, stack, **settings)
    with served as url, httpx.Client(base_url=url, timeout=30) as http:
        # A chain of two trusted proxies: the client is the address the outer one saw.
        chain = [_send_form(http, "203.0.113.9, 10.1.2.3") for _ in range(3)]
        other = _send_form(http, "203.0.113.10, 10.1.2.3")
    assert chain == [303, 303, 429]
    assert other == 303


def test_an_unreadable_trusted_proxies_setting_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"WORKBENCH_TRUSTED_PROXIES.*not-an-address"):
        create_app(settings_for(tmp_path, 9, trusted_proxies="127.0.0.1, not-an-address"))


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
    ],
)
def test_limits_count_ipv4_by_address_and_ipv6_by_its_64(host: str, key: str) -> None:
    assert client_key(host) == key


@pytest.mark.parametrize("trusted", ["127.0.0.1", "::ffff:127.0.0.1", "::ffff:127.0.0.0/104"])
async def test_a_trusted_proxy_reaching_a_dual_stack_socket_ipv4_mapped_is_believed(trusted: str) -> None:
    """However the setting spells it: an operator may have written the mapped form (review)."""
    seen: list[object] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        seen.append(scope["client"])

    middleware = ClientAddressMiddleware(app, parse_trusted_proxies(trusted))
    scope = {
        "type": "http",
        "client": ("::ffff:127.0.0.1", 50000),
        "headers": [(b"x-forwarded-for", b"2001:db8::7")],
    }
    await middleware(scope, None, None)  # type: ignore[arg-type]
    assert seen == [("2001:db8::7", 0)]
