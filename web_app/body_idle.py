"""Cut off request bodies that stop arriving (408), so a stalled client holds nothing for long.

A body that sends nothing for `seconds` ends the request: the app sees `BodyIdle` where it reads
the body (the bulk upload route reports what it had committed), and a request whose response has
not started is answered 408 here. Waiting for a disconnect after the body is not limited.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web_app.middleware import BodyGuard, BodyRefused


class BodyIdle(BodyRefused):
    def __init__(self, seconds: float) -> None:
        detail = f"The request body stalled: nothing arrived for {seconds:g} seconds, so it was cut off."
        title = "The request body stalled"
        super().__init__(408, detail, title, problem_detail=detail, headers={"Connection": "close"})


class BodyIdleMiddleware(BodyGuard):
    refusal = BodyIdle

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        super().__init__(app)
        self.seconds = seconds

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_done = False

        async def receive_in_time() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            with anyio.move_on_after(self.seconds):
                message = await receive()
                body_done = message["type"] != "http.request" or not message.get("more_body", False)
                return message
            raise BodyIdle(self.seconds)

        await self.call_app(scope, receive_in_time, send)
