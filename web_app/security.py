"""Access tokens and CSRF tokens: the web app's cryptography (passwords: `pipeline_lib.contract.users`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenClaims:
    username: str
    scopes: frozenset[str]
    token_id: str = ""  # the token's `jti`, by which signing out revokes it
    expires: float = 0.0  # the token's `exp`, seconds since the epoch


def create_access_token(username: str, scopes: list[str], secret: str, minutes: int) -> str:
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": username,
        "scopes": sorted(scopes),
        "iat": now,
        "exp": now + dt.timedelta(minutes=minutes),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


_verified: dict[tuple[str, str], tuple[TokenClaims, float]] = {}
_VERIFIED_MAX = 10_000


def decode_access_token(token: str, secret: str) -> TokenClaims | None:
    """The token's claims if it is ours, untampered and unexpired; else None. A verified token
    is remembered until it expires: API clients send the same one with every request."""
    known = _verified.get((token, secret))
    if known is not None and time.time() < known[1]:
        return known[0]
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return None
    scopes = claims.get("scopes")
    if not isinstance(claims.get("sub"), str) or not isinstance(scopes, list):
        return None
    token_id = claims.get("jti") if isinstance(claims.get("jti"), str) else ""
    scope_set = frozenset(s for s in scopes if isinstance(s, str))
    verified = TokenClaims(claims["sub"], scope_set, token_id, float(claims["exp"]))
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[(token, secret)] = (verified, float(claims["exp"]))
    return verified


def csrf_token(session_value: str, secret: str) -> str:
    """The form field that must accompany the CSRF cookie `session_value` (double submit, signed)."""
    return hmac.new(secret.encode(), session_value.encode(), hashlib.sha256).hexdigest()


def csrf_valid(session_value: str | None, field_value: str | None, secret: str) -> bool:
    if not session_value or not field_value:
        return False
    return hmac.compare_digest(csrf_token(session_value, secret), field_value)
