"""The API docs pages in Chromium with the network cut: /docs and /redoc need nothing from outside.

Every request that leaves the app's loopback origin is aborted and recorded; each page must then
list every operation of the API, ask for nothing outside, and log no console error (a CSP
violation among them). Screenshots: tests/artifacts/screenshots/<test>-<step>.png.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, Route, expect

from tests.web_app.conftest import WebStack

pytestmark = [pytest.mark.slow, pytest.mark.browser]

Screenshot = Callable[[Page, str], Path]  # the `screenshot` fixture


def cut_network(page: Page, stack: WebStack) -> list[str]:
    """Abort every request to another host or port than the app's; return the list of them."""
    origin = urlsplit(stack.url).netloc
    outside: list[str] = []

    def only_the_app(route: Route) -> None:
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_the_app)
    return outside


def console_errors(page: Page) -> list[str]:
    """Every console error, CSP violations and failed loads included."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"script error: {error}"))
    return errors


def operations(stack: WebStack) -> list[tuple[str, str, str]]:
    """(method, path, summary) of every operation in the served OpenAPI document."""
    schema = httpx.get(f"{stack.url}/openapi.json", timeout=30).raise_for_status().json()
    found = [
        (method.upper(), path, operation["summary"])
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(found) >= 10 and ("POST", "/api/v1/submissions", "Submit one record") in found
    return found


def test_swagger_ui_lists_every_operation_with_the_network_cut(
    page: Page, stack: WebStack, screenshot: Screenshot
) -> None:
    outside = cut_network(page, stack)
    errors = console_errors(page)
    wanted = operations(stack)

    page.goto("/docs")
    expect(page.get_by_role("heading", name=re.compile(r"^Student Data Workbench"))).to_be_visible()
    blocks = page.locator(".opblock")
    expect(blocks).to_have_count(len(wanted))
    for method, path, summary in wanted:
        block = page.locator(f".opblock-{method.lower()}", has=page.locator(f'[data-path="{path}"]'))
        expect(block).to_have_count(1)
        expect(block.locator(".opblock-summary-method")).to_have_text(method)
        expect(block.locator(".opblock-summary-description")).to_have_text(summary)
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    screenshot(page, "listed")

    # The page works, not just shows: try an operation, answered by the app itself.
    health = page.locator(".opblock-get", has=page.locator('[data-path="/healthz"]'))
    health.locator(".opblock-summary-control").click()
    health.get_by_role("button", name="Try it out").click()
    health.get_by_role("button", name="Execute").click()
    expect(health.locator(".live-responses-table tr.response .response-col_status")).to_have_text("200")
    screenshot(page, "tried")

    assert outside == [], f"the page asked for outside resources: {outside}"
    assert errors == [], f"console errors: {errors}"


def test_redoc_lists_every_operation_with_the_network_cut(
    page: Page, stack: WebStack, screenshot: Screenshot
) -> None:
    outside = cut_network(page, stack)
    errors = console_errors(page)
    wanted = operations(stack)

    page.goto("/redoc")
    expect(page.get_by_role("heading", name=re.compile(r"^Student Data Workbench"))).to_be_visible()
    for _method, _path, summary in wanted:
        expect(page.get_by_role("heading", name=re.compile(rf" {re.escape(summary)}$"))).to_be_visible()
    menu = page.locator(".menu-content")
    for tag in ("health", "auth", "submissions", "schools", "results", "runs"):
        expect(menu.get_by_text(tag, exact=True)).to_be_visible()
    # Its search index (built in a worker from a blob: URL) finds an operation.
    page.get_by_placeholder("Search...").fill("Submit one")
    result = menu.locator("[role=search] li", has_text="Submit one record")
    expect(result).to_have_count(1)
    result.click()
    expect(page).to_have_url(re.compile(r"#tag/submissions/operation/"))
    # ReDoc's footer logo comes from the package too (its bundle would ask a CDN for it).
    logo = page.get_by_alt_text("redocly logo")
    expect(logo).to_be_visible()
    assert logo.evaluate("image => image.naturalWidth") > 0
    screenshot(page, "listed")

    assert outside == [], f"the page asked for outside resources: {outside}"
    assert errors == [], f"console errors: {errors}"
