"""The API docs pages need nothing from outside: every URL they name is on the app's own origin,
each answers with the right type, and each page's policy admits only its own inline script.

The same pages in Chromium with the network cut: tests/e2e/test_docs_offline.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.web_app.conftest import WebStack, settings_for
from web_app.main import create_app

PAGES = ["/docs", "/redoc"]
TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}


class _Links(HTMLParser):
    """The URLs a page loads (src, href, ReDoc's spec-url) and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]
        self._in_script = tag == "script" and not any(name == "src" for name, _ in attrs)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_scripts.append(data)


def _links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _directives(policy: str) -> dict[str, list[str]]:
    return {name: rest for name, *rest in (part.split() for part in policy.split(";"))}


@pytest.mark.parametrize("path", PAGES)
def test_docs_page_loads_only_from_its_own_origin(stack: WebStack, path: str) -> None:
    with stack.client() as client:
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert not re.search(r"(https?:)?//", page.text), "the page names another host"
        links = _links(page.text)
        # Swagger UI gets the schema URL from its start-up script, ReDoc from its spec-url.
        links.urls += re.findall(r"url: '([^']+)'", page.text)
        assert "/openapi.json" in links.urls and len(links.urls) >= 3, links.urls
        for url in links.urls:
            assert url.startswith("/") and not url.startswith("//"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            suffix = url[url.rfind(".") :]
            wanted = "application/json" if url == "/openapi.json" else TYPES[suffix]
            assert asset.headers["content-type"].split(";")[0] == wanted, url


def test_redoc_bundle_shows_the_logo_it_is_served_with(stack: WebStack) -> None:
    """ReDoc's own bundle fetches its logo from a CDN; the packaged one looks beside the page."""
    with stack.client() as client:
        bundle = client.get("/redoc/redoc.standalone.js").text
        assert "cdn.redoc.ly" not in bundle and 'window.location.pathname+"/logo-mini.svg"' in bundle
        logo = client.get("/redoc/logo-mini.svg")
    assert logo.status_code == 200 and logo.headers["content-type"] == "image/svg+xml"


@pytest.mark.parametrize("path", [*PAGES, "/docs/oauth2-redirect"])
def test_docs_page_policy_allows_its_own_inline_script_only(stack: WebStack, path: str) -> None:
    with stack.client() as client:
        page = client.get(path)
    assert page.status_code == 200
    [policy] = page.headers.get_list("content-security-policy")
    directives = _directives(policy)
    assert directives["default-src"] == ["'self'"] and directives["frame-ancestors"] == ["'self'"]
    assert directives["img-src"] == ["'self'", "data:"]
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _links(page.text).inline_scripts
    ]
    assert directives["script-src"] == ["'self'", *hashes]
    if path == "/redoc":  # ReDoc adds style elements as it loads and runs its search in a worker
        assert directives["style-src"] == ["'self'", "'unsafe-inline'"]
        assert directives["worker-src"] == ["'self'", "blob:"]
    else:
        assert hashes and "'unsafe-inline'" not in directives["style-src"]


def test_docs_pages_are_not_operations_of_the_api(tmp_path: Path) -> None:
    paths = create_app(settings_for(tmp_path, 1)).openapi()["paths"]
    assert paths and not [path for path in paths if path.startswith(("/docs", "/redoc"))]
