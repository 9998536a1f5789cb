"""The body-rate rule on its own: only the time spent waiting for the client counts (pure logic,
the middleware with an ASGI receive and app of its own; the uvicorn test is in test_bulk_limits)."""

from __future__ import annotations

import anyio

from web_app.body_idle import BodyIdleMiddleware


def _run(chunks: int, client_pause: float, app_pause: float) -> list[dict]:
    """What the middleware sent (the app sends nothing: an answer is the middleware's refusal)."""
    sent: list[dict] = []

    async def receive() -> dict:
        await anyio.sleep(client_pause)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def app(scope: dict, receive_body, send) -> None:  # type: ignore[no-untyped-def]
        for _ in range(chunks):
            await receive_body()
            await anyio.sleep(app_pause)  # a database write the app waits for

    async def send(message: dict) -> None:
        sent.append(message)

    middleware = BodyIdleMiddleware(app, seconds=0.3)
    anyio.run(middleware.http, {"type": "http", "method": "POST", "path": "/"}, receive, send)
    return sent


def test_an_app_that_reads_slowly_does_not_make_the_client_slow() -> None:
    """A batch write of a minute made a fast upload 'arrive too slowly' (review)."""
    assert _run(chunks=5, client_pause=0.0, app_pause=0.2) == []


def test_a_client_that_sends_a_kilobyte_every_tenth_of_a_second_is_too_slow() -> None:
    start, body = _run(chunks=20, client_pause=0.15, app_pause=0.0)
    assert start["status"] == 408 and b"too slowly" in body["body"]
