"""Browser fixtures: Debian's Chromium driven by Playwright, one fresh context per test.

The web stack (a real db-api and a real uvicorn server) is the `stack` fixture of the web app
tests. Screenshots go to tests/artifacts/screenshots/<test-name>-<step>.png; a failing test
leaves one named <test-name>-failed.png.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    expect,
    sync_playwright,
)

from tests.web_app.conftest import WebStack, stack, web_settings

__all__ = ["stack", "web_settings"]  # fixtures re-exported for the tests in this directory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
TIMEOUT_MS = 15_000
expect.set_options(timeout=10_000)  # assertions wait this long (default 5 s): 2 shared cores

Screenshot = Callable[[Page, str], Path]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")  # Playwright keeps an event loop running until it stops
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is not installed: run `make chromium` (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Screenshot:
    """`screenshot(page, step)` saves a full-page PNG named after the test and the step."""
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def take(page: Page, step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{test_name}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def _new_context(browser: Browser, stack: WebStack, **options: object) -> BrowserContext:
    context = browser.new_context(base_url=stack.url, **options)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


def _watch(page: Page, problems: list[str]) -> None:
    """Record script errors, console errors (CSP violations among them) and failed sub-resources.
    A page answering 4xx (a form with mistakes answers 422) is expected; a missing favicon too."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console error on {page.url}: {message.text}")

    def on_response(response: Response) -> None:
        request = response.request
        expected = request.resource_type == "document" or request.url.endswith("/favicon.ico")
        if response.status >= 400 and not expected:
            problems.append(f"{response.status} for {request.resource_type} {request.url}")

    def on_failed(request: Request) -> None:
        # A navigation cancels what the previous page was still loading: that is no fault.
        if request.failure != "net::ERR_ABORTED" and not request.url.endswith("/favicon.ico"):
            problems.append(f"request failed ({request.failure}): {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"script error on {page.url}: {error}"))
    page.on("requestfailed", on_failed)
    page.on("response", on_response)


@pytest.fixture
def new_page(
    browser: Browser, stack: WebStack, screenshot: Screenshot, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Page]]:
    """`new_page(**context_options)`: a page in a fresh context (own cookies) on the test's stack.
    After a passing test, any browser-side problem (see `_watch`) fails it."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def make(**options: object) -> Page:
        context = _new_context(browser, stack, **options)
        contexts.append(context)
        page = context.new_page()
        _watch(page, problems)
        return page

    yield make
    report = getattr(request.node, "rep_call", None)
    failed = report is not None and report.failed
    for index, context in enumerate(contexts):
        if failed and context.pages:
            suffix = "" if index == 0 else f"-{index}"
            with contextlib.suppress(Exception):  # a screenshot must not hide the test's failure
                screenshot(context.pages[-1], f"failed{suffix}")
        context.close()
    if problems and not failed:
        pytest.fail("the browser reported problems:\n" + "\n".join(problems))


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A desktop-sized page in a fresh context."""
    return new_page(viewport={"width": 1280, "height": 900})
