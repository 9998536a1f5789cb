"""The bounded protocol on a real socket pair and event loop, without a server around it: what
the parser does with a piece read that holds far more pipelined requests than allowed."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from uvicorn.server import ServerState

from pipeline_lib.settings import Settings
from web_app.http_protocol import HEAD_SECONDS, MAX_PIPELINED, BoundedHttpToolsProtocol


async def _slow_app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    await asyncio.sleep(5)  # requests pipelined behind this one wait


def test_parsing_stops_once_too_many_requests_wait() -> None:
    """The cap was checked only after the whole piece read was parsed: 256 KiB of pipelined
    requests queued 14,562 of them and held the loop about a second (review)."""

    async def scenario() -> tuple[int, bool]:
        config = uvicorn.Config(_slow_app, log_level="warning")
        config.load()
        protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, theirs)
        ours.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)  # 54 KB: one piece, read at once
        await asyncio.sleep(0.5)
        queued, closing = len(protocol.pipeline), protocol.transport.is_closing()
        for task in protocol.tasks:
            task.cancel()
        ours.close()
        return queued, closing

    queued, closing = asyncio.run(scenario())
    assert closing
    assert queued <= MAX_PIPELINED + 1


def test_the_head_limit_without_a_setting_is_the_settings_default() -> None:
    assert Settings.model_fields["upload_idle_seconds"].default == HEAD_SECONDS
