"""How many bulk uploads run at once, in total and per account, so no client holds them all.

An upload takes a slot before its body is read and gives it back when it ends, however it ends;
one over either limit is refused at once (the route answers 429). State lives on the event loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class UploadSlots:
    def __init__(self, total: int, per_account: int) -> None:
        self.total = total
        self.per_account = per_account
        self.held: Counter[str] = Counter()

    def refusal(self, account: str) -> str | None:
        """Why `account` may not start an upload now, or None if it may."""
        if self.held[account] >= self.per_account:
            return (
                f"This account has {self.held[account]} bulk uploads in progress: an account may have "
                f"{self.per_account} at once. Wait for one to finish."
            )
        if sum(self.held.values()) >= self.total:
            return f"The server takes {self.total} bulk uploads at once, and has them: try again shortly."
        return None

    @contextmanager
    def taken(self, account: str) -> Iterator[None]:
        self.held[account] += 1
        try:
            yield
        finally:
            self.held[account] -= 1
            if not self.held[account]:
                del self.held[account]
