"""Single flight: a db-api lease held for the length of a run and renewed while it runs.

A holder that dies stops renewing, so its lease expires after `ttl` seconds and the next run
proceeds; a live holder renews every ttl/3, so a slow run never loses its lease.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from pipeline_lib.db_client import DbApiClient

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, client: DbApiClient, name: str, holder: str, ttl_seconds: float) -> None:
        self.client = client
        self.name = name
        self.holder = holder
        self.ttl = ttl_seconds
        self.held_by: str = ""
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> bool:
        """True if we hold the lease now; else `held_by` names the current holder."""
        lease = self.client.acquire_lease(self.name, self.holder, self.ttl)
        self.held_by = lease.holder
        if lease.acquired:
            self._renewer = threading.Thread(target=self._renew, name=f"lease {self.name}", daemon=True)
            self._renewer.start()
        return lease.acquired

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.client.acquire_lease(self.name, self.holder, self.ttl).acquired:
                    log.error("lease lost", extra={"lease": self.name, "holder": self.holder})
                    return
            except Exception as exc:  # the next attempt may reach the db-api again
                log.warning("lease renewal failed", extra={"lease": self.name, "error": str(exc)})

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
            try:
                self.client.release_lease(self.name, self.holder)
            except Exception as exc:  # it expires on its own
                log.warning("lease release failed", extra={"lease": self.name, "error": str(exc)})

    def __enter__(self) -> LeaseKeeper:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
