"""A live page on its way through the proxy: the kernel it names is read as Voilà sends it, and
once it has been sent, a page that has not opened its kernel's socket within
`WORKBENCH_VOILA_CONNECT_SECONDS` (the viewer left, or its script never ran) has its kernel shut
down and its place under the cap freed. Without this, such a kernel lived until Voilà's culler
found it idle (11 minutes by default), holding a place the whole time.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from web_app.live_kernels import LiveKernels

log = logging.getLogger(__name__)

# Voilà's page configuration, in the page's head: `"kernelId": "<uuid>"` (JSON, as its template
# writes it). Linear-time: no part of the pattern can match in more than one way.
_KERNEL_ID = re.compile(rb'"kernelId": ?"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"')
SCAN_BYTES = 1 << 20  # the configuration comes before the page's cells; nothing later is searched
_OVERLAP = 80  # longer than a match: one cut between two pieces is found with the next piece


class KernelIdReader:
    """The kernel id in the first `SCAN_BYTES` of a page fed to it piece by piece."""

    def __init__(self) -> None:
        self.kernel_id: str | None = None
        self._tail = b""
        self._read = 0

    def feed(self, piece: bytes) -> str | None:
        """The kernel id, the first time it is complete in what was fed; else None."""
        if self.kernel_id is not None or self._read >= SCAN_BYTES:
            return None
        window = self._tail + piece[: SCAN_BYTES - self._read]
        self._read += len(piece)
        found = _KERNEL_ID.search(window)
        if found:
            self.kernel_id = found[1].decode("ascii")
            return self.kernel_id
        self._tail = window[-_OVERLAP:]
        return None


class PageWatch:
    """Pages sent and not connected yet, each checked `connect_seconds` after it was sent."""

    def __init__(
        self,
        live: LiveKernels,
        shut_down: Callable[[str], Coroutine[Any, Any, None]],
        connect_seconds: float,
    ) -> None:
        self.live, self.shut_down, self.connect_seconds = live, shut_down, connect_seconds
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def relay(self, page: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`page` as it comes, its kernel noted; the check is set when it ends (sent, or cut off
        by a viewer who left: then nobody will connect, and the check frees the place)."""
        reader = KernelIdReader()
        try:
            async for piece in page:
                if kernel_id := reader.feed(piece):
                    self.live.page_kernel(kernel_id)
                yield piece
        finally:
            if reader.kernel_id is not None:
                self._later(reader.kernel_id)

    def _later(self, kernel_id: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # finalised outside the loop: the admission expires as before
            return
        loop.call_later(self.connect_seconds, self._check, kernel_id)

    def _check(self, kernel_id: str) -> None:
        if not self.live.unconnected(kernel_id):
            return
        self.live.forget(kernel_id)
        log.info("live page never connected: its kernel is shut down", extra={"kernel": kernel_id})
        task = asyncio.create_task(self.shut_down(kernel_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
