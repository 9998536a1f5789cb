"""uvicorn's httptools protocol with the bounds it lacks on what comes before a request's body.

uvicorn (with httptools) sets no limit on a request head's size, nor on its time to arrive, nor on
requests pipelined behind one another on a connection: a header sent in small pieces cost the
event loop quadratic time (4 MiB: 4.7 s), a connection sending nothing was held for ever, and
10 MiB of pipelined requests queued 300,000 of them (711 MB). The app's own guards are ASGI
middleware, which see a request only once its head is complete. Here:

- a head must arrive within `head_seconds` of the connection's start or of its first byte (the
  app's `upload_idle_seconds`), else the connection is closed;
- a head of more than MAX_HEAD_BYTES is answered 431 and the connection closed;
- while a request waits behind another, nothing more is read, and past MAX_PIPELINED waiting
  the connection is closed.

A reverse proxy in front (`docs/operations.md`) bounds all three too; these hold without one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # nginx's default allows 4 x 8 KiB of header lines
MAX_PIPELINED = 32  # requests waiting behind the one served, on one connection
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 31\r\n\r\nThe request head is too large.\n"
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, head_seconds: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_seconds = head_seconds
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # from the connection's start, and from each request's first byte
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_head = self._in_head
        super().data_received(data)
        if in_head and self._in_head and self.parser is not None:
            # Still in the head this piece started in (or in a later one, pipelined): its bytes
            # count toward the head, a bound that overcounts only requests pipelined within it.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._cancel_head_timer()
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINED:
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.pipeline and not self.transport.is_closing():
            self.flow.pause_reading()  # uvicorn reads on while requests still wait: not here

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()
