"""The web app's server accepts a burst of new connections at once, even while it is busy.

uvloop accepted one waiting connection per turn of the event loop, so under load new visitors
waited in the kernel's accept queue for up to a second (`web_app.serving`). This holds the
server's loop still while connections arrive, lets it take one turn, and looks at the queue.
"""

from __future__ import annotations

import gc
import socket
import struct
import threading

import uvicorn
from starlette.types import Receive, Scope, Send

from tests.web_app.conftest import ThreadedUvicorn, WebStack
from tests.wire_servers import free_port
from web_app.serving import uvicorn_options

CONNECTIONS = 20


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app: the server is what is under test."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _accept_queue(listening: socket.socket) -> int:
    """Connections the kernel holds for `listening` that the server has not accepted (Linux:
    `tcpi_unacked` of a listening socket's TCP_INFO)."""
    info = listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("8B5I", info)[12]


def test_connections_that_arrive_while_the_app_is_busy_are_all_accepted_in_one_turn() -> None:
    port = free_port()
    server = ThreadedUvicorn(uvicorn.Config(_app, host="127.0.0.1", port=port, **uvicorn_options("")))
    thread = server.start_in_thread()
    clients: list[socket.socket] = []
    try:
        loop = server.servers[0].get_loop()
        listening = server.servers[0].sockets[0]
        holding, busy, looked, done = (threading.Event() for _ in range(4))

        def hold() -> None:  # the app busy: the loop does nothing else
            holding.set()
            busy.wait()

        loop.call_soon_threadsafe(hold)
        # Wait until the loop is inside `hold`: a loop thread that has polled but not yet run its
        # callbacks (waiting for the GIL) would run `hold` and the turn below before it polls again.
        assert holding.wait(10), "the server's loop did not take the callback"
        for _ in range(CONNECTIONS):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert _accept_queue(listening) == CONNECTIONS

        def after_one_turn() -> None:  # runs a turn after the one in which the loop sees them
            looked.set()
            done.wait(10)

        loop.call_soon_threadsafe(lambda: loop.call_soon(after_one_turn))
        busy.set()
        assert looked.wait(10), "the server's loop did not come back"
        waiting = _accept_queue(listening)
        done.set()
        assert waiting == 0, f"{waiting} of {CONNECTIONS} connections still wait to be accepted"
    finally:
        busy.set()
        done.set()
        for client in clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=15)


def test_the_started_app_keeps_its_start_up_objects_out_of_full_collections(stack: WebStack) -> None:
    """Full collections rescanned every import-time object and paused the loop for tens of ms."""
    assert stack.app is not None
    assert gc.get_freeze_count() > 10_000
