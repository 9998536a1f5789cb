"""Tokens ended before they expire (by signing out), remembered until they would have expired.

Kept in the rate limits' storage (`web_app.ratelimit.limit_storage`): when that is shared, a token
signed out on one web worker or replica is refused by all.
"""

from __future__ import annotations

import math
import time

from limits.storage import Storage

from web_app.ratelimit import off_loop
from web_app.security import TokenClaims


class RevokedTokens:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def revoke(self, claims: TokenClaims) -> None:
        seconds = math.ceil(claims.expires - time.time())
        if claims.token_id and seconds > 0:
            await off_loop(self.storage, self.storage.incr, f"revoked/{claims.token_id}", seconds)

    async def revoked(self, claims: TokenClaims) -> bool:
        if not claims.token_id:
            return False
        return await off_loop(self.storage, self.storage.get, f"revoked/{claims.token_id}") > 0
