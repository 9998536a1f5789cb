"""`check_port_free`: a port a server listens on is taken; one a stopped server's connections
still wait out TIME_WAIT on is free (a restart within a minute of a stop must work)."""

from __future__ import annotations

import socket

import pytest

from pipeline_lib.cli.addresses import PortTaken, check_port_free


def test_a_listening_port_is_taken() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with pytest.raises(PortTaken, match=f"127.0.0.1:{port} is already in use"):
            check_port_free("127.0.0.1", port, "the web app")


def test_a_port_in_time_wait_after_its_server_stopped_is_free() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server's side closes first: its end waits in TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    check_port_free("127.0.0.1", port, "the web app")
