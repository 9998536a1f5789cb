"""PNGs of result charts, drawn by resvg at 2x: ~180 ms of CPU each, against ~2 ms for the result as
JSON. So each chart is drawn once and kept, requests for one chart at once share its drawing, and at
most `at_once` are drawn at a time: many downloads at once cannot fill the thread pool that sign-out
checks, bulk parsing and password checks share, nor take every core.

A chart is keyed by a digest of its SVG: the SVG is what the reader sees of that result version (and
of its disclosure view), so an equal SVG draws an equal PNG.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from web_app.bytes_cache import BytesCache
from web_app.routes.result_views import chart_png

MiB = 1024 * 1024
# A chart of at most MAX_CHART_BARS bars draws to some tens of KB: a few hundred charts kept.
CACHE_BYTES = 16 * MiB
DRAWINGS_AT_ONCE = 2  # the machine's cores
SLOT_WAIT_SECONDS = 2.0  # a request waits this long for a drawing slot, then is asked to come back
RETRY_AFTER_SECONDS = 2

Renderer = Callable[[str], bytes]


class ChartsBusy(RuntimeError):
    def __init__(self, at_once: int) -> None:
        charts = "chart" if at_once == 1 else "charts"
        super().__init__(
            f"The server is drawing {at_once} {charts} at once, its limit for PNG charts: "
            f"try again in a few seconds (the SVG download is not limited)."
        )


class ChartRenders:
    """PNGs of chart SVGs: each drawn once and kept; at most `at_once` drawn at a time, in worker
    threads, off the event loop. State lives on the event loop."""

    def __init__(
        self,
        cache_bytes: int = CACHE_BYTES,
        at_once: int = DRAWINGS_AT_ONCE,
        wait_seconds: float = SLOT_WAIT_SECONDS,
        render: Renderer = chart_png,
    ) -> None:
        self.at_once = at_once
        self.wait_seconds = wait_seconds
        self.cache: BytesCache[str] = BytesCache(cache_bytes)  # PNGs by SVG digest
        self._render = render
        self._slots = asyncio.Semaphore(at_once)
        self._drawing: dict[str, asyncio.Task[bytes]] = {}

    async def png(self, svg: str) -> bytes:
        """The chart as a PNG. Raises ChartsBusy when no slot frees within `wait_seconds`."""
        digest = hashlib.sha256(svg.encode()).hexdigest()
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        task = self._drawing.get(digest)
        if task is None:  # requests for one chart at once share its drawing
            task = asyncio.create_task(self._draw_in_slot(digest, svg))
            self._drawing[digest] = task
            task.add_done_callback(lambda done: self._finished(digest, done))
        # Shielded: a request that goes away leaves the drawing (and its slot) to finish for the others.
        return await asyncio.shield(task)

    async def _draw_in_slot(self, digest: str, svg: str) -> bytes:
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_seconds)
        except TimeoutError:
            raise ChartsBusy(self.at_once) from None
        try:
            png = await run_in_threadpool(self._render, svg)
        finally:
            self._slots.release()
        self.cache.put(digest, png)
        return png

    def _finished(self, digest: str, task: asyncio.Task[bytes]) -> None:
        self._drawing.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved, so a drawing no request waited for does not log a warning
