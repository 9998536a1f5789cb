"""The app's cookies: HttpOnly always, and Secure whenever people reach the app over HTTPS (an
https `WORKBENCH_PUBLIC_URL`, TLS to the app itself, or a trusted proxy saying https)."""

from __future__ import annotations

from typing import Literal

from fastapi import Request, Response

SameSite = Literal["lax", "strict"]


def secure(request: Request) -> bool:
    public_url = request.app.state.settings.public_url or ""
    return public_url.lower().startswith("https://") or request.url.scheme == "https"


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    samesite: SameSite,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite=samesite, secure=secure(request)
    )


def delete_cookie(response: Response, request: Request, name: str, samesite: SameSite) -> None:
    """Deleting takes the attributes the cookie was set with, or a browser may keep it."""
    response.delete_cookie(name, httponly=True, samesite=samesite, secure=secure(request))
