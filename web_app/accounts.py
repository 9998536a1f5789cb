"""Every request's token checked against its account: a user disabled, deleted or given fewer
scopes loses access within seconds, not when the token expires.

The account is read from the db-api at most once per `ttl` seconds per user (5 s by default):
API clients send the same token with every request, and the cache keeps that from costing a
db-api call each time. When it expires, the requests that find it so share one read (many
viewers signed in as one account, or an API client with many connections, would otherwise each
call the db-api at the same moment).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.contract.users import SCOPES
from web_app.security import TokenClaims

# How long a web app process may still honour an account's old state (`workbench users` says so).
TTL_SECONDS = 5.0


class AccountCache:
    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._accounts: dict[str, tuple[dict | None, float]] = {}
        self._reading: dict[str, asyncio.Future[dict | None]] = {}  # the read under way, per user

    async def get(self, db: AsyncDbApiClient, username: str) -> dict | None:
        """The user's document as it was at most `ttl` seconds ago; None if there is none."""
        known = self._accounts.get(username)
        if known is not None and time.monotonic() < known[1]:
            return known[0]
        reading = self._reading.get(username)
        if reading is None:
            reading = asyncio.ensure_future(self._read(db, username))
            self._reading[username] = reading
            reading.add_done_callback(lambda done: self._read_over(username, done))
        # Shielded: a request that goes away (its client disconnected) does not cancel the read
        # the others wait for.
        return await asyncio.shield(reading)

    async def _read(self, db: AsyncDbApiClient, username: str) -> dict | None:
        started = time.monotonic()
        user = await db.get_document("users", username)
        if len(self._accounts) >= self.max_entries:
            self._accounts.clear()
        self._accounts[username] = (user, started + self.ttl)
        return user

    def _read_over(self, username: str, done: asyncio.Future[dict | None]) -> None:
        if self._reading.get(username) is done:
            del self._reading[username]
        if not done.cancelled():
            done.exception()  # seen here too: all who waited for it may have gone


def as_the_account_stands(claims: TokenClaims, user: dict | None) -> TokenClaims | None:
    """The token's claims cut to what the account holds now; None if it may not sign in at all."""
    if user is None or user.get("disabled"):
        return None
    held = set(user.get("scopes", []))
    grantable = set(SCOPES) if "admin" in held else held
    return dataclasses.replace(claims, scopes=claims.scopes & grantable)
