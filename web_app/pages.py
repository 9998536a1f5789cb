"""Rendering HTML pages: templates, the CSRF cookie every form needs, shared page context."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from web_app.cookies import set_cookie
from web_app.deps import CSRF_COOKIE, PAGE_USER, SESSION_COOKIE
from web_app.security import TokenClaims, csrf_token, decode_access_token

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


async def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A page with a CSRF token for its forms (double submit: a cookie and a signed field)."""
    secret: str = request.app.state.jwt_secret
    cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    user = await _signed_in(request, secret)
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {"csrf": csrf_token(cookie, secret), "user": user, **context},
        status_code=status_code,
    )
    if CSRF_COOKIE not in request.cookies:
        set_cookie(response, request, CSRF_COOKIE, cookie, samesite="strict")
    return response


async def _signed_in(request: Request, secret: str) -> TokenClaims | None:
    """Who the page says is signed in: as `page_user` judged them when the page needs a user (no
    second decode and sign-out lookup), else from the session cookie."""
    judged = getattr(request.state, PAGE_USER, None)
    if judged is not None:
        return judged  # type: ignore[no-any-return]
    token = request.cookies.get(SESSION_COOKIE)
    user = decode_access_token(token, secret) if token else None
    if user is not None and await request.app.state.revoked_tokens.revoked(user):
        return None
    return user
