"""The cap on live dashboards (`WORKBENCH_VOILA_MAX_KERNELS`): each live page holds a Voilà
kernel of 150-300 MB, so the proxy admits a page only while fewer than the cap are live.

A slot is taken when a page is admitted, before its kernel exists. The proxy reads the page's
kernel id as Voilà sends it (`page_kernel`), and the page's first WebSocket to that kernel binds
the slot to it; the slot is free again when the kernel's last socket closes (the tab closed, or
Voilà shut the idle kernel down). A page that has not connected some time after it was sent (the
viewer left) is `unconnected`: unless Voilà counts a socket to it (through another web process),
the proxy shuts its kernel down and `forget`s it. An admission whose kernel the proxy never learnt
gives its slot back after `bind_seconds`, which the app sets to how long such a kernel may live
unseen (until Voilà's culler finds it idle); a page whose render failed gives it back at once.
The count is per web process: pure bookkeeping, without I/O, on the event loop's thread.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

KERNEL_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # Voilà's, lower-case


class LiveKernels:
    def __init__(
        self, cap: int, bind_seconds: float = 120.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cap = cap
        self.bind_seconds = bind_seconds
        self._clock = clock
        self._pending: deque[float] = deque()  # admissions whose kernel is not known yet, oldest first
        self._unseen: dict[str, float] = {}  # kernel id -> when its page named it; no socket yet
        self._opening: dict[str, int] = {}  # kernel id -> sockets being opened to Voilà right now
        self._sockets: dict[str, int] = {}  # kernel id -> open sockets through the proxy

    def _expire(self) -> None:
        horizon = self._clock() - self.bind_seconds
        while self._pending and self._pending[0] < horizon:
            self._pending.popleft()
        for kernel_id in [k for k, named in self._unseen.items() if named < horizon]:
            del self._unseen[kernel_id]

    @property
    def live(self) -> int:
        """Slots in use: kernels with an open socket, and admitted pages not connected yet."""
        self._expire()
        return len(self._sockets) + len(self._unseen) + len(self._pending)

    def admit(self) -> bool:
        """Take a slot for a page about to start (or take a preheated) kernel; False at the cap."""
        if self.live >= self.cap:
            return False
        self._pending.append(self._clock())
        return True

    def give_back(self) -> None:
        """An admitted page that will not connect (its render failed): free its slot now."""
        if self._pending:
            self._pending.pop()

    def page_kernel(self, kernel_id: str) -> None:
        """An admitted page named its kernel: the oldest admission's slot is now that kernel's (the
        oldest, so the others are held at least as long as before)."""
        self._expire()
        if kernel_id in self._unseen or kernel_id in self._sockets:
            return  # a preheated kernel Voilà handed out again would be named twice
        if self._pending:
            self._pending.popleft()
            self._unseen[kernel_id] = self._clock()

    def unconnected(self, kernel_id: str) -> bool:
        """Whether `kernel_id`'s page named it and no socket to it has opened, or is opening, since."""
        return kernel_id in self._unseen and kernel_id not in self._opening

    def opening(self, kernel_id: str) -> None:
        """A socket to `kernel_id` is being opened (Voilà may take seconds to take it)."""
        self._opening[kernel_id] = self._opening.get(kernel_id, 0) + 1

    def opened(self, kernel_id: str) -> None:
        """The socket being opened to `kernel_id` is open (then `connected`) or failed."""
        left = self._opening.get(kernel_id, 0) - 1
        if left > 0:
            self._opening[kernel_id] = left
        else:
            self._opening.pop(kernel_id, None)

    def forget(self, kernel_id: str) -> None:
        """The unconnected page's kernel is being shut down: free its slot."""
        self._unseen.pop(kernel_id, None)

    def connected(self, kernel_id: str) -> None:
        """A socket to `kernel_id` opened; a kernel's first binds its page's slot, or the oldest
        admission's when its page was not read."""
        if kernel_id not in self._sockets:
            self._expire()
            if self._unseen.pop(kernel_id, None) is None and self._pending:
                self._pending.popleft()
        self._sockets[kernel_id] = self._sockets.get(kernel_id, 0) + 1

    def disconnected(self, kernel_id: str) -> bool:
        """A socket to `kernel_id` closed; True when it was the kernel's last (its slot is free)."""
        left = self._sockets.get(kernel_id, 0) - 1
        if left > 0:
            self._sockets[kernel_id] = left
            return False
        self._sockets.pop(kernel_id, None)
        return True
