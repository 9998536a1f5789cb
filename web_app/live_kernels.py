"""The cap on live dashboards (`WORKBENCH_VOILA_MAX_KERNELS`): each live page holds a Voilà
kernel of 150-300 MB, so the proxy admits a page only while fewer than the cap are live, and
only while its account holds fewer than `WORKBENCH_VOILA_KERNELS_PER_ACCOUNT` of them (so one
analyst's tabs, or a script keeping sockets busy, cannot hold every place).

A slot is taken for the page's account when a page is admitted, before its kernel exists. The
proxy reads the page's kernel id as Voilà sends it (`page_kernel`), and the page's first WebSocket
to that kernel binds the slot to it; the slot is free again when the kernel's last socket closes
(the tab closed, or Voilà shut the idle kernel down). A page that has not connected some time after
it was sent (the viewer left) is `unconnected`: unless Voilà counts a socket to it (through another
web process), the proxy shuts its kernel down and `forget`s it. An admission whose kernel the proxy
never learnt gives its slot back after `bind_seconds`, which the app sets to how long such a kernel
may live unseen (until Voilà's culler finds it idle); a page whose render failed gives it back at
once. The count is per web process: pure bookkeeping, without I/O, on the event loop's thread.

Each socket to a kernel opens four ZMQ sockets in Voilà, so sockets are bounded too (`take_socket`):
`SOCKETS_PER_KERNEL` to one kernel, and that many per live page an account may hold, across kernels;
a kernel another account's page started takes none of this account's (it could only take the
page's own places, or act in its owner's kernel).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

KERNEL_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # Voilà's, lower-case
# A page opens one socket to its kernel; a reconnect may open the next while the proxy has not yet
# seen the old one close (a dropped network: until the ping times out).
SOCKETS_PER_KERNEL = 2


class LiveKernels:
    def __init__(
        self,
        cap: int,
        per_account: int | None = None,
        bind_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cap = cap
        self.per_account = cap if per_account is None else per_account
        self.bind_seconds = bind_seconds
        self._clock = clock
        # Each slot is an account's: admissions whose kernel is not known yet (oldest first), pages
        # that named their kernel and have no socket yet, kernels with sockets through the proxy.
        self._pending: deque[tuple[float, str]] = deque()  # (when admitted, account)
        self._unseen: dict[str, tuple[float, str]] = {}  # kernel id -> (when its page named it, account)
        self._opening: dict[str, int] = {}  # kernel id -> sockets being opened to Voilà right now
        self._sockets: dict[str, int] = {}  # kernel id -> open sockets through the proxy
        self._owners: dict[str, str] = {}  # kernel id with sockets -> the account its slot counts for
        # Sockets being opened or open through the proxy, by kernel and by the account opening them.
        self._kernel_sockets: dict[str, int] = {}
        self._account_sockets: dict[str, int] = {}
        # Kernels whose last socket closed, until they are known shut down: still their owner's.
        self._closing: dict[str, tuple[float, str]] = {}  # kernel id -> (when closed, account)

    def _expire(self) -> None:
        horizon = self._clock() - self.bind_seconds
        while self._pending and self._pending[0][0] < horizon:
            self._pending.popleft()
        for kernel_id in [k for k, (named, _) in self._unseen.items() if named < horizon]:
            del self._unseen[kernel_id]
        for kernel_id in [k for k, (closed, _) in self._closing.items() if closed < horizon]:
            del self._closing[kernel_id]

    @property
    def live(self) -> int:
        """Slots in use: kernels with an open socket, and admitted pages not connected yet."""
        self._expire()
        return len(self._sockets) + len(self._unseen) + len(self._pending)

    def held(self, account: str) -> int:
        """Slots `account` holds."""
        self._expire()
        return (
            sum(1 for _, owner in self._pending if owner == account)
            + sum(1 for _, owner in self._unseen.values() if owner == account)
            + sum(1 for owner in self._owners.values() if owner == account)
        )

    def admit(self, account: str) -> str | None:
        """Take a slot for `account`'s page about to start (or take a preheated) kernel; None when
        taken, else why not: `busy` (at the cap) or `yours` (the account holds `per_account`)."""
        if self.live >= self.cap:
            return "busy"
        if self.held(account) >= self.per_account:
            return "yours"
        self._pending.append((self._clock(), account))
        return None

    def _take_pending(self, account: str, newest: bool = False) -> bool:
        """Remove `account`'s oldest (or newest) admission; whether it had one."""
        order = range(len(self._pending) - 1, -1, -1) if newest else range(len(self._pending))
        for index in order:
            if self._pending[index][1] == account:
                del self._pending[index]
                return True
        return False

    def give_back(self, account: str) -> None:
        """`account`'s admitted page will not connect (its render failed): free its slot now."""
        self._take_pending(account, newest=True)

    def page_kernel(self, kernel_id: str, account: str) -> bool:
        """`account`'s admitted page named its kernel: the account's oldest admission's slot is now
        that kernel's (the oldest, so the others are held at least as long as before). Whether it
        is: not for a kernel named already, nor without an admission of the account's."""
        self._expire()
        if kernel_id in self._unseen or kernel_id in self._sockets:
            return False  # a preheated kernel Voilà handed out again would be named twice
        if not self._take_pending(account):
            return False
        self._unseen[kernel_id] = (self._clock(), account)
        return True

    def unconnected(self, kernel_id: str) -> bool:
        """Whether `kernel_id`'s page named it and no socket to it has opened, or is opening, since."""
        return kernel_id in self._unseen and kernel_id not in self._opening

    def opening(self, kernel_id: str) -> None:
        """A socket to `kernel_id` is being opened (Voilà may take seconds to take it)."""
        self._opening[kernel_id] = self._opening.get(kernel_id, 0) + 1

    def opened(self, kernel_id: str) -> None:
        """The socket being opened to `kernel_id` is open (then `connected`) or failed."""
        _decrement(self._opening, kernel_id)

    def forget(self, kernel_id: str) -> None:
        """The unconnected page's kernel is being shut down: free its slot."""
        self._unseen.pop(kernel_id, None)

    def connected(self, kernel_id: str, account: str) -> None:
        """`account` opened a socket to `kernel_id`; a kernel's first binds its page's slot (the
        page's account's), or `account`'s oldest admission's when its page was not read."""
        if kernel_id not in self._sockets:
            self._expire()
            named = self._unseen.pop(kernel_id, None)
            if named is not None:
                account = named[1]
            else:
                self._take_pending(account)
            self._owners[kernel_id] = account
        self._sockets[kernel_id] = self._sockets.get(kernel_id, 0) + 1

    def disconnected(self, kernel_id: str) -> bool:
        """A socket to `kernel_id` closed; True when it was the kernel's last (its slot is free)."""
        _decrement(self._sockets, kernel_id)
        if kernel_id in self._sockets:
            return False
        owner = self._owners.pop(kernel_id, None)
        if owner is not None:  # until `released`: its shut-down may take seconds, or fail
            self._expire()
            self._closing[kernel_id] = (self._clock(), owner)
        return True

    def released(self, kernel_id: str) -> None:
        """The kernel whose last socket closed is shut down: it has no owner any more."""
        self._closing.pop(kernel_id, None)

    @property
    def sockets_per_account(self) -> int:
        """Sockets one account may hold across kernels: a page and its reconnect per live page."""
        return SOCKETS_PER_KERNEL * self.per_account

    def sockets_to(self, kernel_id: str) -> int:
        """Sockets to `kernel_id` being opened or open through this process."""
        return self._kernel_sockets.get(kernel_id, 0)

    def owner(self, kernel_id: str) -> str | None:
        """The account whose page started `kernel_id`, when this process served that page or a
        socket to it; None when it knows neither."""
        if kernel_id in self._owners:
            return self._owners[kernel_id]
        known = self._unseen.get(kernel_id) or self._closing.get(kernel_id)
        return known[1] if known is not None else None

    def others(self, kernel_id: str, account: str) -> bool:
        """Whether `kernel_id` is known here as another account's: its sockets and its kernel paths
        are then not `account`'s to use."""
        return self.owner(kernel_id) not in (None, account)

    def take_socket(self, kernel_id: str, account: str) -> str | None:
        """Take a place for a socket `account` is about to open to `kernel_id`; None when taken, else
        why not: `owner` (another account's page started it: its kernel and its socket places are
        that page's), `kernel` (it has `SOCKETS_PER_KERNEL`) or `account` (it holds
        `sockets_per_account`)."""
        if self.others(kernel_id, account):
            return "owner"
        if self.sockets_to(kernel_id) >= SOCKETS_PER_KERNEL:
            return "kernel"
        if self._account_sockets.get(account, 0) >= self.sockets_per_account:
            return "account"
        self._kernel_sockets[kernel_id] = self.sockets_to(kernel_id) + 1
        self._account_sockets[account] = self._account_sockets.get(account, 0) + 1
        return None

    def give_socket_back(self, kernel_id: str, account: str) -> None:
        """The socket `take_socket` made a place for closed, or never opened."""
        _decrement(self._kernel_sockets, kernel_id)
        _decrement(self._account_sockets, account)


def _decrement(counts: dict[str, int], key: str) -> None:
    """One less of `key`, which is dropped at zero (so the counts hold only what is in use)."""
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
