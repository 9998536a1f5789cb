"""Addresses of the services the commands start or reach: `host:port` parsing, the address a
local client uses for a wildcard bind, whether a port is free and whether a service answers."""

from __future__ import annotations

import socket

from pipeline_lib.settings import LOOPBACK, WILDCARDS, Settings, reachable

# `reachable` and its constants live with the settings, where the web app reaches Voilà with them too.
__all__ = [
    "LOOPBACK",
    "WILDCARDS",
    "PortTaken",
    "check_port_free",
    "db_api_serving",
    "http_answers",
    "reachable",
    "split_address",
]


class PortTaken(RuntimeError):
    pass


def split_address(address: str) -> tuple[str, int]:
    """`host:port` as its host and port (the last colon splits, so `[::1]:50051` keeps its host)."""
    host, _, port = address.rpartition(":")
    return host, int(port)


def check_port_free(host: str, port: int, name: str) -> None:
    """Raise PortTaken, naming `name`, when `host:port` cannot be bound (checked before a service
    starts, so a second workbench fails with one clear line instead of a server's traceback)."""
    with socket.socket() as sock:
        # As the servers bind: a port whose old connections wait out TIME_WAIT (a service just
        # stopped) is free; one a server listens on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise PortTaken(
                f"{name} cannot start: {host}:{port} is already in use "
                "(another workbench running? stop it, or choose other ports in the settings)"
            ) from None


def http_answers(url: str) -> bool:
    """Whether `url` answers 200 within a second."""
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def db_api_serving(settings: Settings) -> bool:
    """Whether the db-api of `settings` answers its health check with SERVING within a second."""
    from pipeline_lib.client.sync import DbApiClient

    with DbApiClient.from_settings(settings, timeout=1) as client:
        try:
            return client.health() == "SERVING"
        except Exception:
            return False
