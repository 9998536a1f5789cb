"""Whose address a request counts as: the connection's, unless it comes from a trusted proxy.

Rate limits and sign-in throttling count `request.client.host`. A client could otherwise name
itself anew with every request by sending `X-Forwarded-For`, so the header is believed only when
the connection comes from an address in `WORKBENCH_TRUSTED_PROXIES` (none by default). Then the
client is the rightmost address in the header that no trusted proxy added (what the outermost
proxy saw), and `X-Forwarded-Proto` gives the scheme. The app does this itself, whatever server
runs it, as long as that server leaves the client address alone (`workbench web` tells uvicorn
the same proxies).

Limits count a client by `client_key` of that address: an IPv4 address as itself, an IPv6 address
by its /64 (every IPv6 customer holds at least one, and can pick a fresh address in it for every
request), an IPv4-mapped IPv6 address (`::ffff:203.0.113.7`, as a dual-stack socket reports IPv4
peers) as its IPv4 address.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_ADDRESS_CHARS = 64
_IPV6_CUSTOMER_PREFIX = 64  # the smallest network an IPv6 customer is given


def _ip(host: str) -> IPAddress | None:
    """`host` as an IP address, IPv4-mapped IPv6 as IPv4; None if it is no IP address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_key(host: str) -> str:
    """What per-client limits count `host` as: an IPv4 address as itself, IPv6 by its /64 (written
    `2001:db8::/64`), anything else (no IP address, e.g. a test client's name) as itself."""
    address = _ip(host)
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((int(address), _IPV6_CUSTOMER_PREFIX), strict=False)
        return str(network)
    return str(address) if address else host


def parse_trusted_proxies(value: str) -> tuple[IPNetwork, ...]:
    """The networks of `WORKBENCH_TRUSTED_PROXIES` (comma-separated addresses or CIDR networks)."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"WORKBENCH_TRUSTED_PROXIES: {item!r} is not an IP address or network "
                "(write e.g. 127.0.0.1, 10.0.0.0/8, ::1)"
            ) from None
    return tuple(networks)


def uvicorn_proxy_options(trusted_proxies: str) -> dict[str, Any]:
    """uvicorn's own proxy handling, set to believe the same proxies as the app (or none)."""
    networks = parse_trusted_proxies(trusted_proxies)
    return {
        "proxy_headers": bool(networks),
        "forwarded_allow_ips": ",".join(str(n) for n in networks) if networks else "",
    }


def _address(entry: str) -> str:
    """An `X-Forwarded-For` entry without a port (`1.2.3.4:80`, `[::1]:80`) or brackets."""
    entry = entry.strip()[:_MAX_ADDRESS_CHARS]
    if entry.startswith("["):
        return entry[1:].partition("]")[0]
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


class ClientAddressMiddleware:
    """Sets the ASGI scope's `client` (and `scheme`) from proxy headers sent by trusted proxies."""

    def __init__(self, app: ASGIApp, trusted: tuple[IPNetwork, ...]) -> None:
        self.app = app
        self.trusted = trusted

    def _is_trusted(self, host: str) -> bool:
        # A proxy at 127.0.0.1 may reach a dual-stack socket as ::ffff:127.0.0.1: trusted if either
        # spelling is in a trusted network (a setting may name it either way).
        try:
            raw = ipaddress.ip_address(host)
        except ValueError:
            return False
        spellings = {raw, _ip(host)}
        return any(address in network for address in spellings for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and self.trusted and client and self._is_trusted(client[0]):
            self._believe_headers(scope)
        await self.app(scope, receive, send)

    def _believe_headers(self, scope: Scope) -> None:
        forwarded_for: list[str] = []
        proto = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for.extend(value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[0].strip().lower()
        hops = [address for entry in forwarded_for if (address := _address(entry))]
        if hops:
            # Each proxy appends the address it saw: walk back past our own proxies.
            untrusted = next((hop for hop in reversed(hops) if not self._is_trusted(hop)), hops[0])
            scope["client"] = (untrusted, 0)
        if proto in ("http", "https"):
            scope["scheme"] = proto if scope["type"] == "http" else proto.replace("http", "ws")
