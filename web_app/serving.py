"""How uvicorn serves the web app: one set of options for `workbench web` and the tests' servers."""

from __future__ import annotations

import functools
import gc
from typing import Any

from web_app.client_address import uvicorn_proxy_options
from web_app.http_protocol import HEAD_SECONDS, BoundedHttpToolsProtocol

# asyncio's own event loop, not uvloop. uvloop's libuv accepts one waiting connection per turn of
# the loop (libuv PR #3696), so while the app is busy new connections queue in the kernel: with 64
# wrk clients on a dashboard snapshot, 38 connections waited up to 1.3 s to be accepted and the
# page's p99 was 280-930 ms. asyncio accepts every waiting connection at once (p99 62-82 ms),
# for 2-7% fewer requests per second on that page (none measurable on the form's POSTs).
EVENT_LOOP = "asyncio"


def uvicorn_options(trusted_proxies: str, head_seconds: float = HEAD_SECONDS) -> dict[str, Any]:
    """uvicorn's options for the web app behind `trusted_proxies` (WORKBENCH_TRUSTED_PROXIES),
    a request head given `head_seconds` to arrive (WORKBENCH_UPLOAD_IDLE_SECONDS)."""
    http = functools.partial(BoundedHttpToolsProtocol, head_seconds=head_seconds)
    return {"loop": EVENT_LOOP, "http": http, **uvicorn_proxy_options(trusted_proxies)}


def freeze_startup_heap() -> None:
    """Called once the app has started: the objects that exist now (the imports of FastAPI,
    pandas, pyarrow, gRPC: hundreds of thousands) live as long as the process, so the cyclic
    collector stops rescanning them in every full collection. Each such scan paused the event loop
    for tens of milliseconds: at 32 clients posting submissions, p99 went from 88-93 ms to 36-44 ms
    (medians of three runs) with this, and requests/s rose by a few percent (`tests/bench/bench_web.py`)."""
    gc.collect()
    gc.freeze()
