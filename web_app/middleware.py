"""What the app's own ASGI middleware share (HTTP only; the request-body refusals of `body_limit`
and `body_idle`), and the security headers every response carries."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMiddleware:
    """Base of a middleware that acts on HTTP requests (`http`); other scopes (lifespan) pass
    through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"SAMEORIGIN"),
]
_PAGE_CSP = (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'self'")


class SecurityHeaders(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
                # A response with its own policy (a sandboxed run notebook, an API docs page) keeps it.
                own = any(name.lower() == _PAGE_CSP[0] for name, _ in message["headers"])
                if not own:
                    message["headers"].append(_PAGE_CSP)
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyRefused(HTTPException):
    """A request body refused where it is read. An HTTPException, so FastAPI's body parsing
    passes it on instead of answering 400; the middleware that raised it answers with `title`
    and `problem_detail` when nothing else has answered yet (`BodyGuard.call_app`)."""

    def __init__(
        self, status: int, detail: str, title: str, problem_detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, detail, headers=headers)
        self.title = title
        self.problem_detail = problem_detail

    async def answer(self, send: Send) -> None:
        problem = {"type": "about:blank", "title": self.title, "status": self.status_code}
        body = json.dumps({**problem, "detail": self.problem_detail}, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/problem+json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BodyGuard(HttpMiddleware):
    """Base of a middleware that guards request bodies: its `http` calls `call_app` with a
    `receive` that raises its `refusal`."""

    refusal: type[BodyRefused] = BodyRefused

    async def call_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, with the refusal it raises answered here if its response has not started."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except self.refusal as exc:
            if not started:  # else the response is under way already: nothing more to say
                await exc.answer(send)
