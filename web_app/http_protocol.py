"""uvicorn's httptools protocol with the bounds it lacks on what comes before a request's body.

uvicorn (with httptools) sets no limit on a request head's size, nor on its time to arrive, nor on
requests pipelined behind one another on a connection: a header sent in small pieces cost the
event loop quadratic time (4 MiB: 4.7 s), a connection sending nothing was held for ever, and
10 MiB of pipelined requests queued 300,000 of them (711 MB). The app's own guards are ASGI
middleware, which see a request only once its head is complete. Here:

- a head must be complete within `head_seconds` (the app's `upload_idle_seconds`) of the
  connection's start, or of the last response when nothing waits (stray line breaks or the
  unread body of an answered request no longer keep a connection open), else it is closed;
- a head (or a body's trailers) of more than MAX_HEAD_BYTES is answered 431 and the connection
  closed, counted as the bytes arrive (while a head is incomplete) and exactly once it is;
- past MAX_PIPELINED requests waiting behind another the connection is closed, and parsing
  stops at once (not at the end of the piece read, up to 256 KiB of further requests).

A reverse proxy in front (`docs/operations.md`) bounds all three too; these hold without one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # nginx's default allows 4 x 8 KiB of header lines
MAX_PIPELINED = 32  # requests waiting behind the one served, on one connection
_HEADER_OVERHEAD = 4  # ": " and CRLF around each header's name and value
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 31\r\n\r\nThe request head is too large.\n"
)


class _Stop(Exception):
    """Raised from a parser callback to stop parsing a connection being closed."""


HEAD_SECONDS = 30.0  # when no limit is given: WORKBENCH_UPLOAD_IDLE_SECONDS's default


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, head_seconds: float = HEAD_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_seconds = head_seconds
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # from the connection's start, and from each request's first byte
        self._head_bytes = 0  # bytes read while the current head was incomplete
        self._header_bytes = 0  # the current request's header lines (and trailers), exactly
        self._body_in_read = 0  # body bytes the parser took from the piece being read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._body_in_read = 0
        super().data_received(data)
        if self._in_head and self.parser is not None and not self.transport.is_closing():
            # A head still incomplete: this piece's bytes but its body bytes count toward it (and
            # any requests pipelined whole before it, a bound that overcounts only those).
            self._head_bytes += len(data) - self._body_in_read
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # not after a refusal that stopped the parser
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        if self.transport.is_closing():
            raise _Stop  # httptools stops parsing the piece (as a callback error)
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._header_bytes = 0
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + _HEADER_OVERHEAD
        if self._header_bytes + len(self.url) > MAX_HEAD_BYTES:  # trailers too, after the body
            self._refuse_head()
            raise _Stop
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINED:
            log.warning("closing a connection: over %d requests pipelined", MAX_PIPELINED)
            self.transport.close()
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self._body_in_read += len(body)
        super().on_body(body)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.pipeline:
            self.flow.pause_reading()  # uvicorn reads on while requests still wait: not here
        elif self.cycle.response_complete:  # not while a request let in from the queue runs
            self._arm_head_timer()  # the next head, beside uvicorn's keep-alive (which bytes reset)

    def _refuse_head(self) -> None:
        self._cancel_head_timer()
        log.warning("closing a connection: a request head over %d bytes", MAX_HEAD_BYTES)
        if self.cycle is None or self.cycle.response_complete:  # else it would answer an earlier request
            self.transport.write(_TOO_LARGE)
        self.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection: no request head complete within %g s", self.head_seconds)
            self.transport.close()
