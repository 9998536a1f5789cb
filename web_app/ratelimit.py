"""Rate limits: the one storage every limit and back-off counts in, and the form's per-client limit.

The storage is in memory, so each web app process counts alone; sharing the counts across
workers is a change of `limit_storage` only (`limits` has Redis, Memcached, MongoDB storages).
"""

from __future__ import annotations

import time

from limits import parse
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter


def limit_storage() -> Storage:
    """Where the form's rate limit and the sign-in back-off keep their counts."""
    return MemoryStorage()


class FormRateLimiter:
    """Per-client limit of form posts (moving window)."""

    def __init__(self, rule: str, storage: Storage | None = None) -> None:
        self.rule = parse(rule)
        self._limiter = MovingWindowRateLimiter(storage or limit_storage())

    def allow(self, client: str) -> bool:
        """Count one form post from `client`; False once it is over the limit."""
        return self._limiter.hit(self.rule, "form", client)

    def retry_after(self, client: str) -> int:
        reset, _ = self._limiter.get_window_stats(self.rule, "form", client)
        return max(1, int(reset - time.time()))
