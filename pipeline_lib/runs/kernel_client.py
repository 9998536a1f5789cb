"""The client nbclient drives a run's kernel with: ready as soon as the kernel has answered.

jupyter_client's `wait_for_ready` ends by reading IOPub until it has been quiet for 0.2 s, so every
notebook's first cell waited 0.2 s on an idle kernel. Here the wait ends at the last message the
kernel sends for the `kernel_info` request it answered (its `idle` status on IOPub), which also
proves IOPub connected. Older IOPub messages need no flushing: nbclient takes only those whose
parent is the cell it runs.
"""

from __future__ import annotations

import time
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient

# How long one kernel_info request waits for its reply, then for its first status on IOPub, before
# it is asked again (jupyter_client's figures): an IOPub subscription misses what is sent while it
# connects.
_REPLY_SECONDS = 1.0
_IDLE_SECONDS = 0.2


class ReadyKernelClient(AsyncKernelClient):
    def start_channels(
        self,
        shell: bool = True,
        iopub: bool = True,
        stdin: bool = True,
        hb: bool = False,
        control: bool = True,
    ) -> None:
        """As jupyter_client's, without the heartbeat unless asked: the manager that made this client
        watches the kernel's process, and a heartbeat thread stopped as it starts fails (see
        `kernel_ahead`)."""
        super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control)

    async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
        """Return once the kernel answered a `kernel_info` request on the shell channel and sent that
        request's `idle` on IOPub; RuntimeError if it died or did not answer within `timeout`."""
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            request = self.kernel_info()
            reply = await self._next(request, self.shell_channel, _REPLY_SECONDS, "kernel_info_reply")
            if reply is not None and await self._idle_after(request):
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    async def _idle_after(self, request: str) -> bool:
        """Whether `request`'s idle came on IOPub. Its first status (busy) within `_IDLE_SECONDS`
        proves IOPub connected; the idle then follows the reply already received."""
        first = await self._next(request, self.iopub_channel, _IDLE_SECONDS, "status")
        if first is None:
            return False
        if first["content"].get("execution_state") == "idle":
            return True
        then = await self._next(request, self.iopub_channel, _REPLY_SECONDS, "status")
        return then is not None and then["content"].get("execution_state") == "idle"

    async def _next(self, request: str, channel: object, seconds: float, kind: str) -> dict | None:
        """The next message of type `kind` on `channel` whose parent is `request`; None if none came
        within `seconds`."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            try:
                message = await channel.get_msg(timeout=left)  # type: ignore[attr-defined]
            except Empty:
                return None
            if message["parent_header"].get("msg_id") == request and message["msg_type"] == kind:
                return message
        return None
