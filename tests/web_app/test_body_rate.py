"""The body-rate rule on its own: only the time spent waiting for the client counts (pure logic,
the middleware with an ASGI receive and app of its own; the uvicorn test is in test_bulk_limits)."""

from __future__ import annotations

import anyio

from web_app.body_idle import BodyIdleMiddleware


def _run(
    chunks: int,
    client_pause: float | list[float],
    app_pause: float,
    first: int = 1024,
    then: int = 1024,
    max_seconds: float = 3600,
) -> list[dict]:
    """What the middleware sent (the app sends nothing: an answer is the middleware's refusal).
    The client sends `first` bytes, then `then` bytes a chunk, `client_pause` seconds before each
    (or the pause before each chunk in turn)."""
    sent: list[dict] = []
    sizes = iter([first])
    pauses = iter(client_pause if isinstance(client_pause, list) else [client_pause] * chunks)

    async def receive() -> dict:
        await anyio.sleep(next(pauses))
        return {"type": "http.request", "body": b"x" * next(sizes, then), "more_body": True}

    async def app(scope: dict, receive_body, send) -> None:  # type: ignore[no-untyped-def]
        for _ in range(chunks):
            await receive_body()
            await anyio.sleep(app_pause)  # a database write the app waits for

    async def send(message: dict) -> None:
        sent.append(message)

    middleware = BodyIdleMiddleware(app, seconds=0.3, max_seconds=max_seconds)
    anyio.run(middleware.http, {"type": "http", "method": "POST", "path": "/"}, receive, send)
    return sent


def test_an_app_that_reads_slowly_does_not_make_the_client_slow() -> None:
    """A batch write of a minute made a fast upload 'arrive too slowly' (review)."""
    assert _run(chunks=5, client_pause=0.0, app_pause=0.2) == []


def test_a_client_that_sends_a_kilobyte_every_tenth_of_a_second_is_too_slow() -> None:
    start, body = _run(chunks=20, client_pause=0.15, app_pause=0.0)
    assert start["status"] == 408 and b"too slowly" in body["body"]


def test_a_burst_at_the_start_does_not_buy_a_trickle_after_it() -> None:
    """Averaged from the start, a megabyte sent at once let a byte every few seconds follow for
    two minutes (at the 30 s default, 30 MiB held a slot for an hour): the rate is judged over
    the last `seconds` of waiting (review)."""
    sent = _run(chunks=40, client_pause=0.05, app_pause=0.0, first=2**20, then=1)
    assert sent, "the trickle after the burst was never cut off"
    start, body = sent
    assert start["status"] == 408 and b"too slowly" in body["body"]


def test_a_steady_client_with_a_pause_under_the_idle_limit_is_not_too_slow() -> None:
    """The window slides, not resets: a client sending quickly may still pause a moment."""
    pauses = [0.0] * 10 + [0.25] + [0.0] * 10 + [0.25] + [0.01] * 10
    assert _run(chunks=len(pauses), client_pause=pauses, app_pause=0.0, then=64 * 1024) == []


def test_a_client_at_twice_the_minimum_rate_may_pause_most_of_the_idle_limit() -> None:
    """Judged over a window as long as the idle limit, a client sending 16 KiB/s was cut off by a
    pause of two thirds of it (review): the window is WINDOW_IDLE_LIMITS idle limits."""
    pauses = [0.05] * 30 + [0.25] + [0.05] * 5  # 0.8 KiB every 50 ms, one pause of 0.25 s (limit 0.3)
    assert _run(chunks=len(pauses), client_pause=pauses, app_pause=0.0, then=819) == []


def test_a_body_that_keeps_the_rate_is_cut_off_at_the_time_limit() -> None:
    """At the minimum rate a 512 MiB body took 18 hours, holding an upload slot all along; now
    the client's waiting counts against `max_seconds` too (the app's own time does not)."""
    start, body = _run(chunks=40, client_pause=0.05, app_pause=0.0, then=64 * 1024, max_seconds=1.0)
    assert start["status"] == 408 and b"took too long" in body["body"]
    assert _run(chunks=20, client_pause=0.0, app_pause=0.1, then=64 * 1024, max_seconds=1.0) == []
