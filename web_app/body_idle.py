"""Cut off request bodies that stop arriving (408), so a stalled client holds nothing for long.

A body that sends nothing for `seconds` ends the request: the app sees `BodyIdle` where it reads
the body (the bulk upload route reports what it had committed), and a request whose response has
not started is answered 408 here. Waiting for a disconnect after the body is not limited.
"""

from __future__ import annotations

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyIdle(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on instead of answering 400."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"The request body stalled: nothing arrived for {seconds:g} seconds, so it was cut off.",
            headers={"Connection": "close"},
        )


class BodyIdleMiddleware:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False
        started = False

        async def receive_in_time() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            with anyio.move_on_after(self.seconds):
                message = await receive()
                body_done = message["type"] != "http.request" or not message.get("more_body", False)
                return message
            raise BodyIdle(self.seconds)

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_in_time, tracking_send)
        except BodyIdle as exc:
            if not started:  # else the response is under way already: nothing more to say
                await _refuse(send, exc)


async def _refuse(send: Send, exc: BodyIdle) -> None:
    body = (
        b'{"type":"about:blank","title":"The request body stalled","status":408,'
        b'"detail":"' + exc.detail.encode() + b'"}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [(b"content-type", b"application/problem+json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
