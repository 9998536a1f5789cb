"""Cut off request bodies that stop arriving or trickle in (408), so a slow client holds nothing
for long.

A body that sends nothing for `seconds` ends the request, and so does one that sent under
MIN_BYTES_PER_SECOND over its last WINDOW_IDLE_LIMITS x `seconds` of waiting (a byte every few
seconds is never idle, and held an upload slot for as long as its client liked; judged from the
start, a burst first bought hours of such a trickle after it; over a window as long as the idle
limit, a client at 16 KiB/s could not pause 20 s): the app sees `BodyIdle` where it reads the
body (the bulk upload route reports what it had committed), and a request whose response has not
started is answered 408 here. A body still arriving after `max_seconds` of waiting is cut off
too: at the minimum rate, a body of the size limit took 18 hours, holding an upload slot all along.
Waiting for a disconnect after the body is not limited.
"""

from __future__ import annotations

import collections
import time

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web_app.middleware import BodyGuard, BodyRefused


class BodyIdle(BodyRefused):
    """A body cut off: 408, and the connection closed (the rest of the body is not read)."""

    def __init__(self, seconds: float) -> None:
        detail = f"The request body stalled: nothing arrived for {seconds:g} seconds, so it was cut off."
        self._cut_off(detail, "The request body stalled")

    def _cut_off(self, detail: str, title: str) -> None:
        BodyRefused.__init__(self, 408, detail, title, problem_detail=detail, headers={"Connection": "close"})


MIN_BYTES_PER_SECOND = 8 * 1024  # a slow mobile link sends ten times that
WINDOW_IDLE_LIMITS = 4  # the rate's window, in idle limits: a pause under the limit costs it little
# Points kept per window (of waiting) to judge the rate over the last window: the
# window's start is known to within 1/_MARKS_PER_WINDOW of it, and a client's messages, however
# many, cost that many points at most.
_MARKS_PER_WINDOW = 16


class BodySlow(BodyIdle):
    def __init__(self, seconds: float, rate: float) -> None:
        detail = (
            f"The request body arrived too slowly: {rate:,.0f} bytes per second over {seconds:.0f} seconds, "
            f"under the {MIN_BYTES_PER_SECOND:,} this server waits for, so it was cut off."
        )
        self._cut_off(detail, "The request body arrived too slowly")


class BodyTooLong(BodyIdle):
    def __init__(self, seconds: float) -> None:
        detail = f"The request body took too long: it was still arriving after {seconds:g} seconds."
        self._cut_off(detail, "The request body took too long")


class BodyIdleMiddleware(BodyGuard):
    refusal = BodyIdle

    def __init__(self, app: ASGIApp, seconds: float, max_seconds: float) -> None:
        super().__init__(app)
        self.seconds, self.max_seconds = seconds, max_seconds

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_done = False
        waited, received = 0.0, 0  # only the time spent waiting for the client: not the app's own
        marks = collections.deque([(0.0, 0)])  # (waited, received) as they were, oldest first

        async def receive_in_time() -> Message:
            nonlocal body_done, waited, received
            if body_done:
                return await receive()
            with anyio.move_on_after(self.seconds):
                asked = time.monotonic()
                message = await receive()
                waited += time.monotonic() - asked
                body_done = message["type"] != "http.request" or not message.get("more_body", False)
                received += len(message.get("body", b""))
                if not body_done:
                    if waited > self.max_seconds:
                        raise BodyTooLong(self.max_seconds)
                    self._judge_rate(marks, waited, received)
                return message
            raise BodyIdle(self.seconds)

        await self.call_app(scope, receive_in_time, send)

    def _judge_rate(self, marks: collections.deque[tuple[float, int]], waited: float, received: int) -> None:
        """BodySlow if under MIN_BYTES_PER_SECOND arrived over the window (the last
        WINDOW_IDLE_LIMITS x `seconds` of waiting), from the first `seconds` on."""
        window = WINDOW_IDLE_LIMITS * self.seconds
        if waited - marks[-1][0] >= window / _MARKS_PER_WINDOW:
            marks.append((waited, received))
        while len(marks) > 1 and marks[1][0] <= waited - window:
            marks.popleft()  # the window starts at the newest mark at least its length back
        since, before = marks[0]
        span = waited - since
        if span > self.seconds and received - before < MIN_BYTES_PER_SECOND * span:
            raise BodySlow(span, (received - before) / span)
