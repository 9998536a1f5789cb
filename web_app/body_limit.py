"""Refuse request bodies over a size limit (413) before the app reads them whole.

The limit depends on the route: small for the form and JSON, large for bulk uploads, which are
read as a stream. Works for declared lengths and for chunked bodies alike.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web_app.middleware import BodyGuard, BodyRefused


class BodyTooLarge(BodyRefused):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The request body is too large: the limit here is {limit} bytes.",
            title="The request body is too large",
            problem_detail=f"The limit for this address is {limit} bytes.",
        )


class BodyLimitMiddleware(BodyGuard):
    refusal = BodyTooLarge

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        super().__init__(app)
        self.limit_for = limit_for

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await BodyTooLarge(limit).answer(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.call_app(scope, counting_receive, send)
