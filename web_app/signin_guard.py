"""Sign-in throttling: back-off after failed sign-ins, and a bound on password checks at once.

Failures are counted per account and per client address. A few cost nothing; each further one
doubles the wait before that account (or client) may try again: 1 s, 2 s, 4 s, ... up to
`max_wait`. Attempts during a wait are refused with 429 and Retry-After, their password not
checked, and do not count. Failures are forgotten `forget_after` seconds after the last one; a
success forgets the account's (not the client's: one known password must not buy more guesses).

Each password check (argon2) takes ~64 MiB and a core for a fraction of a second, in a worker
thread. Only `max_checks` run at once; a sign-in beyond that is answered 503 with Retry-After at
once rather than queued, so a burst of sign-ins cannot pile up memory or hold other requests.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits.storage import Storage

from web_app.ratelimit import off_loop


class SignInRefused(Exception):
    """A sign-in not even tried: `status` 429 (backing off) or 503 (too many checks at once)."""

    def __init__(self, status: int, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Backoff:
    """Failures of one kind of key (accounts, clients) and the wait they have earned."""

    def __init__(
        self, storage: Storage, kind: str, free: int, max_wait: int = 900, forget_after: int = 3600
    ) -> None:
        self.storage = storage
        self.kind = kind
        self.free = free
        self.max_wait = max_wait
        self.forget_after = forget_after

    def _keys(self, name: str) -> tuple[str, str]:
        digest = hashlib.blake2b(name.encode("utf-8", "replace"), digest_size=16).hexdigest()
        return f"signin/{self.kind}/failures/{digest}", f"signin/{self.kind}/wait/{digest}"

    def wait(self, name: str) -> int:
        """Whole seconds `name` must still wait before trying again; 0 if none."""
        _, wait_key = self._keys(name)
        if self.storage.get(wait_key) == 0:
            return 0
        return max(1, math.ceil(self.storage.get_expiry(wait_key) - time.time()))

    def failed(self, name: str) -> None:
        failures_key, wait_key = self._keys(name)
        failures = self.storage.get(failures_key) + 1
        self.storage.clear(failures_key)  # re-set, so failures are forgotten after the *last* one
        self.storage.incr(failures_key, self.forget_after, amount=failures)
        if failures > self.free:
            seconds = min(self.max_wait, 2 ** min(failures - self.free - 1, 30))
            self.storage.clear(wait_key)
            self.storage.incr(wait_key, seconds)

    def forget(self, name: str) -> None:
        for key in self._keys(name):
            self.storage.clear(key)


class SignInGuard:
    """What every sign-in path asks before and tells after checking a password."""

    def __init__(
        self,
        storage: Storage,
        free_per_account: int = 5,
        free_per_client: int = 20,
        max_checks: int = 4,
        max_wait: int = 900,
    ) -> None:
        self.storage = storage
        self.accounts = Backoff(storage, "account", free_per_account, max_wait)
        self.clients = Backoff(storage, "client", free_per_client, max_wait)
        self._checks = threading.BoundedSemaphore(max_checks)

    async def check(self, account: str, client: str) -> None:
        """Raise SignInRefused (429) while the account or the client is backing off."""
        wait = await off_loop(self.storage, self._wait, account, client)
        if wait:
            raise SignInRefused(429, f"Too many failed sign-ins: try again in {wait} seconds.", wait)

    @contextmanager
    def password_check(self) -> Iterator[None]:
        """A slot for one password check; SignInRefused (503) if all are taken (never waits)."""
        if not self._checks.acquire(blocking=False):
            raise SignInRefused(503, "Too many sign-ins at once: try again in a moment.", 1)
        try:
            yield
        finally:
            self._checks.release()

    def _wait(self, account: str, client: str) -> int:
        return max(self.accounts.wait(account), self.clients.wait(client))

    async def record(self, account: str, client: str, succeeded: bool) -> None:
        await off_loop(self.storage, self._record, account, client, succeeded)

    def _record(self, account: str, client: str, succeeded: bool) -> None:
        if succeeded:
            self.accounts.forget(account)
        else:
            self.accounts.failed(account)
            self.clients.failed(client)
