"""A live page on its way through the proxy: the kernel it names is read as Voilà sends it, and
once it has been sent, a page that has not opened its kernel's socket within
`WORKBENCH_VOILA_CONNECT_SECONDS` (the viewer left, or its script never ran) has its kernel shut
down and its place under the cap freed. Without this, such a kernel lived until Voilà's culler
found it idle (11 minutes by default), holding a place the whole time.

Voilà is asked first how many sockets the kernel has: with several web processes, the page's
socket may have gone through another one, which this process cannot see.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from limits.errors import StorageError

from web_app.kernel_owners import KernelOwners
from web_app.live_kernels import KERNEL_ID, LiveKernels

log = logging.getLogger(__name__)

# Voilà's page configuration, in the page's head, before anything a notebook writes (the theme and
# template a page's address could name are not taken: `cli.dashboards`).
_CONFIG_START = b'<script id="jupyter-config-data"'
_CONFIG_END = b"</script>"
SCAN_BYTES = 1 << 20  # nothing past the page's first MiB is searched or kept


class KernelIdReader:
    """The `kernelId` of the page configuration in the first `SCAN_BYTES` of a page fed to it
    piece by piece; every byte is searched once."""

    def __init__(self) -> None:
        self.kernel_id: str | None = None
        self._done = False
        self._read = 0
        self._tail = b""  # while the configuration's start is not seen: the end of what was fed
        self._config: bytearray | None = None  # from its start on, once seen

    def feed(self, piece: bytes) -> str | None:
        """The kernel id, when the configuration that names it is complete in what was fed."""
        if self._done:
            return None
        piece = piece[: SCAN_BYTES - self._read]
        self._read += len(piece)
        if self._config is None:
            window = self._tail + piece
            start = window.find(_CONFIG_START)
            if start < 0:
                self._tail = window[-len(_CONFIG_START) :]
                self._done = self._read >= SCAN_BYTES
                return None
            self._config, searched = bytearray(window[start:]), 0
        else:
            searched = max(0, len(self._config) - len(_CONFIG_END))
            self._config += piece
        end = self._config.find(_CONFIG_END, searched)
        if end < 0:
            self._done = self._read >= SCAN_BYTES
            return None
        self._done = True
        self.kernel_id = _kernel_id(bytes(self._config[:end]))
        return self.kernel_id


def _kernel_id(element: bytes) -> str | None:
    """The `kernelId` of `<script id="jupyter-config-data" ...>{json}`, if it is a kernel id."""
    _, _, body = element.partition(b">")
    try:
        config = json.loads(body)
    except ValueError:
        return None
    found = config.get("kernelId") if isinstance(config, dict) else None
    return found if isinstance(found, str) and re.fullmatch(KERNEL_ID, found) else None


class PageWatch:
    """Pages sent and not connected yet, each checked `connect_seconds` after it was sent."""

    def __init__(
        self,
        live: LiveKernels,
        connections: Callable[[str], Coroutine[Any, Any, int | None]],
        shut_down: Callable[[str], Coroutine[Any, Any, bool]],
        connect_seconds: float,
        owners: KernelOwners | None = None,
    ) -> None:
        """`connections(kernel_id)`: Voilà's count of the kernel's sockets (None: unknown);
        `shut_down(kernel_id)`: whether the kernel is gone after asking Voilà to shut it down;
        `owners`: where each page's kernel is recorded as its account's, for the other processes."""
        self.live, self.connections, self.shut_down = live, connections, shut_down
        self.owners = owners
        self.connect_seconds = connect_seconds
        self._timers: dict[str, asyncio.TimerHandle] = {}  # kernel id -> its check, waiting
        self._checks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def relay(self, page: AsyncIterator[bytes], account: str) -> AsyncIterator[bytes]:
        """`page` as it comes, its kernel noted before the piece naming it is passed on (so no
        socket can come first); the check is set when the page ends, sent or cut off by a viewer
        who left (then nobody will connect, and the check frees the place)."""
        reader = KernelIdReader()
        try:
            async for piece in page:
                if (kernel_id := reader.feed(piece)) and self.live.page_kernel(kernel_id, account):
                    await self._record(kernel_id, account)
                yield piece
        finally:
            if reader.kernel_id is not None:
                self._later(reader.kernel_id)

    async def _record(self, kernel_id: str, account: str) -> None:
        if self.owners is None:
            return
        try:
            await self.owners.record(kernel_id, account)
        except StorageError as exc:  # this process knows it still: the page works through it
            log.warning(
                "live page's kernel not recorded: other web processes will refuse it",
                extra={"kernel": kernel_id, "account": account, "error": str(exc)},
            )

    def _later(self, kernel_id: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # finalised outside the loop: the admission expires as before
            return
        self._timers[kernel_id] = loop.call_later(self.connect_seconds, self._start, kernel_id)

    def _start(self, kernel_id: str) -> None:
        self._timers.pop(kernel_id, None)
        task = asyncio.get_running_loop().create_task(self._check(kernel_id))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, kernel_id: str) -> None:
        if not self.live.unconnected(kernel_id):
            return
        sockets = await self.connections(kernel_id)
        if sockets is None or not self.live.unconnected(kernel_id):
            return  # Voilà did not say (the slot expires with its admission), or a socket came
        if sockets > 0:  # connected through another web process, which counts it
            self.live.forget(kernel_id)
            return
        log.info("live page never connected: its kernel is shut down", extra={"kernel": kernel_id})
        if await self.shut_down(kernel_id):
            self.live.forget(kernel_id)

    async def close(self) -> None:
        """Stop the checks (the app is stopping; Voilà's culler ends what they would have)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._checks):
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
