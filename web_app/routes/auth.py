"""Sign-in: the OAuth2 password flow for API clients, a login page and cookie for browsers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import grpc
from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.contract.users import DUMMY_HASH, SCOPES, verify_password
from pipeline_lib.wire.requests import DbApiCallError
from web_app.cookies import delete_cookie, set_cookie
from web_app.deps import (
    SESSION_COOKIE,
    ClientHostDep,
    CsrfPassed,
    DbDep,
    JwtSecretDep,
    RevokedTokensDep,
    SettingsDep,
    SignInGuardDep,
)
from web_app.pages import render
from web_app.problems import problem_responses
from web_app.security import create_access_token, decode_access_token
from web_app.signin_guard import SignInGuard, SignInRefused

router = APIRouter(tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    scopes: list[str]
    expires_in: int


async def authenticate(db: DbDep, username: str, password: str) -> list[str] | None:
    """The user's scopes if the password is right, else None (same work either way)."""
    try:
        user = await db.get_document("users", username) if username else None
    except DbApiCallError as exc:
        if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        user = None  # a name the store cannot hold as a key belongs to no one
    stored_hash = user.get("password_hash", DUMMY_HASH) if user else DUMMY_HASH
    ok = await run_in_threadpool(verify_password, password, stored_hash)
    if not ok or user is None or user.get("disabled"):
        return None
    return list(user.get("scopes", []))


@dataclass(frozen=True)
class SignIn:
    """`authenticate`, throttled for both sign-in paths by the client's and the account's failures."""

    guard: SignInGuard
    client: str
    db: AsyncDbApiClient

    async def __call__(self, username: str, password: str) -> list[str] | None:
        """The user's scopes, or None; SignInRefused (429) while the account or the client backs
        off after failures, (503) while the most password checks at once run."""
        await self.guard.check(username, self.client)
        with self.guard.password_check():
            scopes = await authenticate(self.db, username, password)
        await self.guard.record(username, self.client, succeeded=scopes is not None)
        return scopes


async def _sign_in(guard: SignInGuardDep, client: ClientHostDep, db: DbDep) -> SignIn:
    return SignIn(guard, client, db)


SignInDep = Annotated[SignIn, Depends(_sign_in)]


@router.post(
    "/api/v1/auth/token",
    summary="Get an access token (OAuth2 password flow)",
    responses=problem_responses(
        400,
        401,
        413,
        422,
        429,
        503,
        s400="None of the scopes asked for is granted",
        s401="Incorrect username or password",
        s429="Too many failed sign-ins for this account or from this client: try again after Retry-After",
        s503="Too many sign-ins at once, or the database service is unavailable: try again after Retry-After",
    ),
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    sign_in: SignInDep,
    settings: SettingsDep,
    secret: JwtSecretDep,
) -> Token:
    try:
        granted = await sign_in(form.username, form.password)
    except SignInRefused as refused:
        raise HTTPException(
            refused.status, refused.message, headers={"Retry-After": str(refused.retry_after)}
        ) from None
    if granted is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # An admin may ask for any scope; others get what they asked for of what they hold.
    allowed = set(SCOPES) if "admin" in granted else set(granted)
    scopes = [s for s in form.scopes if s in allowed] if form.scopes else granted
    if form.scopes and not scopes:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"None of the scopes asked for is granted: {form.scopes}"
        )
    minutes = settings.access_token_minutes
    jwt = create_access_token(form.username, scopes, secret, minutes)
    return Token(access_token=jwt, scopes=scopes, expires_in=minutes * 60)


def _safe_next(target: str | None) -> str:
    """Only paths on this site: an open redirect would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/results"
    return target


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request, next: str = "/results") -> Response:
    return await render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(
    request: Request,
    sign_in: SignInDep,
    settings: SettingsDep,
    secret: JwtSecretDep,
    csrf_ok: CsrfPassed,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",  # read by `csrf_ok`; declared for its length limit
    next: Annotated[str, Form(max_length=2000)] = "/results",
) -> Response:
    if not csrf_ok:
        return await render(
            request, "login.html", {"next": _safe_next(next), "error": "The form expired: try again."}, 403
        )
    try:
        scopes = await sign_in(username, password)
    except SignInRefused as refused:
        context = {"next": _safe_next(next), "error": refused.message}
        response = await render(request, "login.html", context, refused.status)
        response.headers["Retry-After"] = str(refused.retry_after)
        return response
    if scopes is None:
        context = {"next": _safe_next(next), "error": "Incorrect username or password."}
        return await render(request, "login.html", context, status.HTTP_401_UNAUTHORIZED)
    minutes = settings.access_token_minutes
    jwt = create_access_token(username, scopes, secret, minutes)
    response = RedirectResponse(_safe_next(next), status.HTTP_303_SEE_OTHER)
    set_cookie(response, request, SESSION_COOKIE, jwt, samesite="lax", max_age=minutes * 60)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(
    request: Request,
    secret: JwtSecretDep,
    revoked: RevokedTokensDep,
    csrf_ok: CsrfPassed,
    csrf: Annotated[str, Form(max_length=200)] = "",  # read by `csrf_ok`; declared for its length limit
) -> Response:
    """Sign out: the session's token is revoked until it expires, and its cookie deleted. Needs the
    page's CSRF token, or any site could sign people out; without it, a page asks to confirm."""
    if not csrf_ok:
        return await render(request, "logout.html", {}, status.HTTP_403_FORBIDDEN)
    session = request.cookies.get(SESSION_COOKIE)
    claims = decode_access_token(session, secret) if session else None
    if claims is not None:
        await revoked.revoke(claims)
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    delete_cookie(response, request, SESSION_COOKIE, samesite="lax")
    return response
