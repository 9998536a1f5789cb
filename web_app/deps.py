"""Dependencies the routes declare: settings, the db-api client, the app's shared state (the JWT
secret, the limiters, the caches), the CSRF check of form posts, the current user.

The one module that reads `app.state` (`main.create_app` fills it): routes declare what they need
here, and tests swap any of it with `app.dependency_overrides`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.contract.users import SCOPES
from pipeline_lib.settings import Settings
from web_app.accounts import AccountCache, as_the_account_stands
from web_app.chart_renders import ChartRenders
from web_app.client_address import client_key
from web_app.live_kernels import LiveKernels
from web_app.ratelimit import FormRateLimiter
from web_app.revoked_tokens import RevokedTokens
from web_app.school_cache import SchoolCache
from web_app.security import TokenClaims, csrf_valid, decode_access_token
from web_app.signin_guard import SignInGuard
from web_app.snapshot_cache import SnapshotCache
from web_app.upload_slots import UploadSlots

SESSION_COOKIE = "wb_session"
CSRF_COOKIE = "wb_csrf"
PAGE_USER = "page_user"  # `request.state` attribute: the user `page_user` let in, for `pages.render`

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", scopes=SCOPES, auto_error=False)


def _app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """The dependency that gives `app.state.<name>` (typed by the Annotated alias below). Async,
    as every dependency here: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
    per dependency per request (eight on a dashboard page) for a getattr."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


get_settings = _app_state("settings")
get_db = _app_state("db")
get_jwt_secret = _app_state("jwt_secret")  # the key that signs access tokens and CSRF tokens
get_form_limiter = _app_state("form_limiter")
get_sign_in_guard = _app_state("sign_in_guard")
get_revoked_tokens = _app_state("revoked_tokens")
get_accounts = _app_state("accounts")
get_upload_slots = _app_state("bulk_uploads")
get_school_cache = _app_state("school_cache")
get_chart_renders = _app_state("chart_renders")  # the result charts' PNGs: kept, a few drawn at once
get_snapshot_cache = _app_state("snapshot_cache")
get_live_kernels = _app_state("live_kernels")
get_voila_http = _app_state("voila_http")  # the client the live dashboards' proxy forwards with


async def client_host(request: Request) -> str:
    """The client rate limits and sign-in throttling count: its address, IPv6 by its /64 (see
    `client_address`)."""
    return client_key(request.client.host) if request.client else "unknown"


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[AsyncDbApiClient, Depends(get_db)]
JwtSecretDep = Annotated[str, Depends(get_jwt_secret)]
FormLimiterDep = Annotated[FormRateLimiter, Depends(get_form_limiter)]
SignInGuardDep = Annotated[SignInGuard, Depends(get_sign_in_guard)]
RevokedTokensDep = Annotated[RevokedTokens, Depends(get_revoked_tokens)]
AccountsDep = Annotated[AccountCache, Depends(get_accounts)]
UploadSlotsDep = Annotated[UploadSlots, Depends(get_upload_slots)]
SchoolCacheDep = Annotated[SchoolCache, Depends(get_school_cache)]
ChartRendersDep = Annotated[ChartRenders, Depends(get_chart_renders)]
SnapshotCacheDep = Annotated[SnapshotCache, Depends(get_snapshot_cache)]
LiveKernelsDep = Annotated[LiveKernels, Depends(get_live_kernels)]
VoilaHttpDep = Annotated[httpx.AsyncClient, Depends(get_voila_http)]
ClientHostDep = Annotated[str, Depends(client_host)]


async def csrf_passed(request: Request, secret: JwtSecretDep) -> bool:
    """Whether a form post carries its page's CSRF token: the `csrf` field signs the CSRF cookie
    (double submit). Each page answers a refusal in its own words (403), so this only tells."""
    field = (await request.form()).get("csrf")  # parsed once per request: routes read it again free
    return csrf_valid(request.cookies.get(CSRF_COOKIE), field if isinstance(field, str) else None, secret)


CsrfPassed = Annotated[bool, Depends(csrf_passed)]


class LoginRequired(Exception):
    """An HTML page needs a login: the app answers with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


@dataclass(frozen=True)
class TokenReader:
    """What judging a token takes: the signing key, the signed-out tokens, the accounts."""

    secret: str
    revoked: RevokedTokens
    accounts: AccountCache
    db: AsyncDbApiClient

    async def claims(self, token: str | None) -> TokenClaims | None:
        """The claims of a token that is ours, unexpired and not signed out, cut to what its account
        holds now (read at most a few seconds ago); None for any other token, or none."""
        claims = decode_access_token(token, self.secret) if token else None
        if claims is None or await self.revoked.revoked(claims):
            return None
        user = await self.accounts.get(self.db, claims.username)
        return as_the_account_stands(claims, user)


async def token_reader(
    secret: JwtSecretDep, revoked: RevokedTokensDep, accounts: AccountsDep, db: DbDep
) -> TokenReader:
    return TokenReader(secret, revoked, accounts, db)


TokenReaderDep = Annotated[TokenReader, Depends(token_reader)]


def _missing_scopes(security_scopes: SecurityScopes, claims: TokenClaims) -> set[str]:
    """The scopes the route asks for that the caller lacks; none for an admin, who holds them all."""
    missing = set(security_scopes.scopes) - claims.scopes
    return set() if "admin" in claims.scopes else missing


async def current_user(
    security_scopes: SecurityScopes,
    request: Request,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    tokens: TokenReaderDep,
) -> TokenClaims:
    """The caller, from a bearer token (API) or the session cookie (pages), holding every scope
    the route asks for; `admin` holds them all."""
    wanted = f'Bearer scope="{security_scopes.scope_str}"' if security_scopes.scopes else "Bearer"
    # The session cookie counts for reading only: a browser sends it on cross-site posts too, and
    # the API has no CSRF token (the pages' forms do, and use `page_user`).
    cookie = request.cookies.get(SESSION_COOKIE) if request.method in ("GET", "HEAD") else None
    claims = await tokens.claims(bearer or cookie)
    if claims is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing, expired or invalid access token",
            headers={"WWW-Authenticate": wanted},
        )
    if missing := _missing_scopes(security_scopes, claims):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"This needs the scope(s): {', '.join(sorted(missing))}",
            headers={"WWW-Authenticate": wanted},
        )
    return claims


async def page_user(security_scopes: SecurityScopes, request: Request, tokens: TokenReaderDep) -> TokenClaims:
    """Like `current_user` for HTML pages: no session sends the browser to the login page."""
    claims = await tokens.claims(request.cookies.get(SESSION_COOKIE))
    if claims is None:
        raise LoginRequired(request.url.path)
    if missing := _missing_scopes(security_scopes, claims):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"This page needs: {', '.join(sorted(missing))}")
    setattr(request.state, PAGE_USER, claims)
    return claims
