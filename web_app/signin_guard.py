"""Sign-in throttling: back-off after failed sign-ins, and a bound on password checks at once.

Failures earn a back-off on three keys. A few failures on a key cost nothing; each further one
doubles its wait: 1 s, 2 s, 4 s, ... up to `max_wait`. Attempts during a wait are refused with 429
and Retry-After, their password not checked, and do not count. Failures are forgotten
`forget_after` seconds after the last one.

- An account from one client (5 free): slows one client guessing one password, and only that
  client. A success forgets it.
- A client on any accounts (20 free): slows one client guessing across many accounts. A success
  keeps it (one known password must not buy more guesses).
- An account from anywhere (20 free): every failure counts, so guesses spread over many clients
  (an IPv6 customer holds 256 /64s or more, see `client_address`) stay as slow as one client's.
  That wait would let anyone lock the owner out, so it does not apply to a client that signed in
  to the account within `known_for` (30 days): the owner at their usual address gets in however
  many others fail (OWASP's advice on lockout); from a new address during an attack, they wait too.
  A success keeps it (the owner knowing the password says nothing about the others).

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
    """Failures of one kind of key (account from a client, client, account) and the wait they have earned."""

    def __init__(
        self, storage: Storage, kind: str, free: int, max_wait: int = 900, forget_after: int = 3600
    ) -> None:
        self.storage = storage
        self.kind = kind
        self.free = free
        self.max_wait = max_wait
        self.forget_after = forget_after

    def _keys(self, name: str) -> tuple[str, str]:
        digest = _digest(name)
        return f"signin/{self.kind}/failures/{digest}", f"signin/{self.kind}/wait/{digest}"

    def wait(self, name: str) -> int:
        """Whole seconds `name` must still wait before trying again; 0 if none."""
        _, wait_key = self._keys(name)
        if self.storage.get(wait_key) == 0:
            return 0
        return max(1, math.ceil(self.storage.get_expiry(wait_key) - time.time()))

    def failed(self, name: str) -> None:
        """Count one failure of `name`, and set its wait if past the free ones."""
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


def _digest(name: str) -> str:
    """A storage key's part for `name`: fixed length, whatever a client sent."""
    return hashlib.blake2b(name.encode("utf-8", "replace"), digest_size=16).hexdigest()


def _account_from_client(account: str, client: str) -> str:
    """One key per (account, client) pair; the length prefix keeps any two pairs apart."""
    return f"{len(client)}:{client}/{account}"


def _seconds(n: int) -> str:
    return f"{n} second" if n == 1 else f"{n} seconds"


class SignInGuard:
    """What every sign-in path asks before and tells after checking a password."""

    def __init__(
        self,
        storage: Storage,
        free_per_account_and_client: int = 5,
        free_per_client: int = 20,
        free_per_account: int = 20,
        known_for: int = 30 * 24 * 3600,
        max_checks: int = 4,
        max_wait: int = 900,
    ) -> None:
        self.storage = storage
        self.accounts_from_clients = Backoff(storage, "account-client", free_per_account_and_client, max_wait)
        self.clients = Backoff(storage, "client", free_per_client, max_wait)
        self.accounts = Backoff(storage, "account-all", free_per_account, max_wait)
        self.known_for = known_for
        self._checks = threading.BoundedSemaphore(max_checks)

    async def check(self, account: str, client: str) -> None:
        """Raise SignInRefused (429) while the account from this client, the client, or (unless this
        client signed in to it lately) the account from anywhere is backing off."""
        wait = await off_loop(self.storage, self._wait, account, client)
        if wait:
            message = f"Too many failed sign-ins: try again in {_seconds(wait)}."
            raise SignInRefused(429, message, wait)

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
        pair = _account_from_client(account, client)
        return max(
            self.accounts_from_clients.wait(pair),
            self.clients.wait(client),
            0 if self._known(pair) else self.accounts.wait(account),
        )

    def _known_key(self, pair: str) -> str:
        return f"signin/known/{_digest(pair)}"

    def _known(self, pair: str) -> bool:
        """Whether this client signed in to this account within `known_for`."""
        return self.storage.get(self._known_key(pair)) > 0

    async def record(self, account: str, client: str, succeeded: bool) -> None:
        await off_loop(self.storage, self._record, account, client, succeeded)

    def _record(self, account: str, client: str, succeeded: bool) -> None:
        pair = _account_from_client(account, client)
        if succeeded:
            self.accounts_from_clients.forget(pair)
            known = self._known_key(pair)
            self.storage.clear(known)  # set anew: known for `known_for` after the last success
            self.storage.incr(known, self.known_for)
            return
        self.accounts_from_clients.failed(pair)
        self.accounts.failed(account)
        self.clients.failed(client)
