"""Dependencies the routes declare: settings, the db-api client, the current user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.contract.users import SCOPES
from pipeline_lib.settings import Settings
from web_app.accounts import as_the_account_stands
from web_app.security import TokenClaims, decode_access_token

SESSION_COOKIE = "wb_session"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", scopes=SCOPES, auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> AsyncDbApiClient:
    return request.app.state.db


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[AsyncDbApiClient, Depends(get_db)]


class LoginRequired(Exception):
    """An HTML page needs a login: the app answers with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


async def _claims(request: Request, bearer: str | None, cookie: bool = True) -> TokenClaims | None:
    """The claims of a token that is ours, unexpired and not signed out, cut to what its account
    holds now (read at most a few seconds ago); None for any other token, or none."""
    token = bearer or (request.cookies.get(SESSION_COOKIE) if cookie else None)
    claims = decode_access_token(token, request.app.state.jwt_secret) if token else None
    if claims is None or request.app.state.revoked_tokens.revoked(claims):
        return None
    user = await request.app.state.accounts.get(request.app.state.db, claims.username)
    return as_the_account_stands(claims, user)


async def current_user(
    security_scopes: SecurityScopes, request: Request, bearer: Annotated[str | None, Depends(oauth2_scheme)]
) -> TokenClaims:
    """The caller, from a bearer token (API) or the session cookie (pages), holding every scope
    the route asks for; `admin` holds them all."""
    wanted = f'Bearer scope="{security_scopes.scope_str}"' if security_scopes.scopes else "Bearer"
    # The session cookie counts for reading only: a browser sends it on cross-site posts too, and
    # the API has no CSRF token (the pages' forms do, and use `page_user`).
    claims = await _claims(request, bearer, cookie=request.method in ("GET", "HEAD"))
    if claims is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing, expired or invalid access token",
            headers={"WWW-Authenticate": wanted},
        )
    missing = set(security_scopes.scopes) - claims.scopes
    if missing and "admin" not in claims.scopes:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"This needs the scope(s): {', '.join(sorted(missing))}",
            headers={"WWW-Authenticate": wanted},
        )
    return claims


async def page_user(security_scopes: SecurityScopes, request: Request) -> TokenClaims:
    """Like `current_user` for HTML pages: no session sends the browser to the login page."""
    claims = await _claims(request, None)
    if claims is None:
        raise LoginRequired(request.url.path)
    missing = set(security_scopes.scopes) - claims.scopes
    if missing and "admin" not in claims.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"This page needs: {', '.join(sorted(missing))}")
    return claims
