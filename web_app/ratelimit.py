"""Per-client rate limit for the public form (moving window, in memory, via `limits`)."""

from __future__ import annotations

import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class FormRateLimiter:
    def __init__(self, rule: str) -> None:
        self.rule = parse(rule)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def allow(self, client: str) -> bool:
        """Count one form post from `client`; False once it is over the limit."""
        return self._limiter.hit(self.rule, "form", client)

    def retry_after(self, client: str) -> int:
        reset, _ = self._limiter.get_window_stats(self.rule, "form", client)
        return max(1, int(reset - time.time()))
