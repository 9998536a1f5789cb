"""Tokens ended before they expire (by signing out), remembered until they would have expired.

Kept in the rate limits' storage (`web_app.ratelimit.limit_storage`), so when that becomes
shared across workers a token signed out on one is refused by all.
"""

from __future__ import annotations

import math
import time

from limits.storage import Storage

from web_app.security import TokenClaims


class RevokedTokens:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def revoke(self, claims: TokenClaims) -> None:
        seconds = math.ceil(claims.expires - time.time())
        if claims.token_id and seconds > 0:
            self.storage.incr(f"revoked/{claims.token_id}", seconds)

    def revoked(self, claims: TokenClaims) -> bool:
        return bool(claims.token_id) and self.storage.get(f"revoked/{claims.token_id}") > 0
