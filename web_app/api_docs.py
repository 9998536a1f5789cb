"""The API docs pages, /docs (Swagger UI) and /redoc (ReDoc), working with no outside access.

FastAPI's own pages load their scripts, styles and icon from CDNs, so they are blank on a
network without internet access. These pages load them from the `fastapi-standalone-docs`
package instead, in the layout it ships: Swagger UI's files under /docs/, ReDoc's under
/redoc/ (its bundle looks for its logo at `<page path>/logo-mini.svg`), FastAPI's icon under
/docs/fastapi/. Each page's content security policy allows this origin only, plus the hashes
of the page's own inline start-up script; ReDoc's also allows the inline styles it adds.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_standalone_docs
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_standalone_docs.__file__).parent / "static"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
FAVICON = f"{DOCS_URL}/fastapi/favicon.png"
# Swagger UI would otherwise show a badge image fetched from validator.swagger.io.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(html: str, *, redoc: bool = False) -> str:
    """A policy for a docs page: this origin only, plus the page's own inline scripts and styles
    by hash. ReDoc's page allows inline styles instead (its bundle adds style elements while it
    loads, before a nonce could reach it) and workers from blob: URLs (its search runs in one)."""
    inline = _INLINE.findall(html)
    scripts = [_digest(text) for kind, text in inline if kind == "script"]
    styles = ["'unsafe-inline'"] if redoc else [_digest(text) for kind, text in inline if kind == "style"]
    policy = [
        "default-src 'self'",
        " ".join(["script-src 'self'", *scripts]),
        " ".join(["style-src 'self'", *styles]),
        "img-src 'self' data:",
        "frame-ancestors 'self'",
    ]
    if redoc:
        policy.append("worker-src 'self' blob:")
    return "; ".join(policy)


def _with_policy(page: HTMLResponse, *, redoc: bool = False) -> HTMLResponse:
    page.headers["content-security-policy"] = content_security_policy(bytes(page.body).decode(), redoc=redoc)
    return page


def install(app: FastAPI) -> None:
    """Serve the docs pages and their assets; the app is made with `docs_url=None, redoc_url=None`."""
    redirect_url = app.swagger_ui_oauth2_redirect_url

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{DOCS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{DOCS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{FAVICON}",
                oauth2_redirect_url=f"{root}{redirect_url}" if redirect_url else None,
                init_oauth=app.swagger_ui_init_oauth,
                swagger_ui_parameters={**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})},
            )
        )

    if redirect_url:

        @app.get(redirect_url, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return _with_policy(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{REDOC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{FAVICON}",
            with_google_fonts=False,
        )
        return _with_policy(page, redoc=True)

    # After the pages: the mounts match every path under their prefix.
    app.mount(f"{DOCS_URL}/fastapi", StaticFiles(directory=ASSETS / "fastapi"), name="docs-fastapi")
    app.mount(DOCS_URL, StaticFiles(directory=ASSETS / "swagger"), name="docs-swagger-ui")
    app.mount(REDOC_URL, StaticFiles(directory=ASSETS / "redoc"), name="docs-redoc")
