"""Single flight: a db-api lease held for the length of a run and renewed while it runs.

A holder that dies stops renewing, so its lease expires after `ttl` seconds and the next run
proceeds; a live holder renews every ttl/3, so a slow run never loses its lease. A run that
loses it anyway (the db-api out of reach for longer than the ttl, and another run took over)
must stop: the keeper calls `on_lost` with the reason, and the db-api refuses the run's writes
that carry its `fence` (the lease's generation) once another holding has begun.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire.requests import Fence

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LeaseKeeper(AbstractContextManager["LeaseKeeper"]):
    """Holds the lease `name` for `holder` from `acquire` to `release` (or the end of a `with`)."""

    client: DbApiClient
    name: str
    holder: str
    ttl: float  # seconds
    # Called once, from the renewing thread, if the lease is lost, with the reason.
    on_lost: Callable[[str], None] | None = field(default=None, kw_only=True)
    held_by: str = field(default="", init=False)
    generation: int = field(default=0, init=False)
    lost: str | None = field(default=None, init=False)  # why the lease was lost, once it is
    # Monotonic time by which our holding surely expired unless renewed.
    _deadline: float = field(default=0.0, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _renewer: threading.Thread | None = field(default=None, init=False)

    @property
    def fence(self) -> Fence:
        """What the run's writes carry: valid while this holding lasts, refused after."""
        return Fence(self.name, self.generation)

    def acquire(self) -> bool:
        """True if we hold the lease now; else `held_by` names the current holder."""
        asked = time.monotonic()
        lease = self.client.acquire_lease(self.name, self.holder, self.ttl)
        self.held_by = lease.holder
        if lease.acquired:
            self.generation = lease.generation
            self._deadline = asked + self.ttl
            self._renewer = threading.Thread(target=self._renew, name=f"lease {self.name}", daemon=True)
            self._renewer.start()
        return lease.acquired

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            asked = time.monotonic()
            try:
                lease = self.client.acquire_lease(self.name, self.holder, self.ttl)
            except Exception as exc:  # the next attempt may reach the db-api again
                if time.monotonic() >= self._deadline:
                    self._lose(
                        f"lease {self.name} expired: the db-api did not answer for {self.ttl:g} s "
                        f"(the lease's length), so another run may hold it now ({exc})"
                    )
                    return
                log.warning("lease renewal failed", extra={"lease": self.name, "error": str(exc)})
                continue
            if not lease.acquired or lease.generation != self.generation:
                # Another run took it after our holding expired: our holding ended.
                self._lose(
                    f"lease {self.name} is now held by {lease.holder} (generation {lease.generation}); "
                    f"this run's generation {self.generation} is stale"
                )
                return
            self._deadline = asked + self.ttl

    def _lose(self, reason: str) -> None:
        self.lost = reason
        log.error("lease lost", extra={"lease": self.name, "holder": self.holder, "error": reason})
        if self.on_lost is not None:
            self.on_lost(reason)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
            try:
                self.client.release_lease(self.name, self.holder)
            except Exception as exc:  # it expires on its own
                log.warning("lease release failed", extra={"lease": self.name, "error": str(exc)})

    def __exit__(self, *exc_info: object) -> None:
        self.release()
