"""Which account's page started each live kernel, for every web process of the app.

`LiveKernels` knows the kernels of the pages and sockets its own process served; with several web
workers or replicas, a socket or a kernel path may reach another process, which knew nothing of the
kernel and let any analyst use it. So the proxy also records each page's kernel against its account
in the rate limits' storage (`web_app.ratelimit.limit_storage`, as `RevokedTokens`), shared when
the processes share it, and a process that does not know a kernel asks it. A kernel no account is
recorded for (not started by a page of this app, or its record expired) is nobody's to use.

A record lasts a sign-in's lifetime: a page's kernel outlives neither its socket nor the sign-in
that opened it (the socket is closed when the sign-in expires, and the kernel shut down).
"""

from __future__ import annotations

from limits.storage import Storage

from web_app.ratelimit import off_loop


class KernelOwners:
    def __init__(self, storage: Storage, seconds: int) -> None:
        self.storage = storage
        self.seconds = seconds

    async def record(self, kernel_id: str, account: str) -> None:
        """`account`'s page started `kernel_id`."""
        # Counted per kernel too: a kernel two pages named (a preheated one handed out twice, seen
        # by two processes) is nobody's, rather than both accounts'.
        await off_loop(self.storage, self.storage.incr, _key(kernel_id), self.seconds)
        await off_loop(self.storage, self.storage.incr, _key(kernel_id, account), self.seconds)

    async def started(self, kernel_id: str, account: str) -> bool:
        """Whether a page of `account`'s, and no other page, started `kernel_id` (as far as the
        records go back)."""
        if await off_loop(self.storage, self.storage.get, _key(kernel_id, account)) < 1:
            return False
        return await off_loop(self.storage, self.storage.get, _key(kernel_id)) == 1


def _key(kernel_id: str, account: str | None = None) -> str:
    # A kernel id is a fixed-format UUID (`live_kernels.KERNEL_ID`), so a key names one kernel,
    # or one kernel and account.
    return f"live-kernel/{kernel_id}" if account is None else f"live-kernel/{kernel_id}/{account}"
