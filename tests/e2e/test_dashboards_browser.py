"""The dashboards in a real browser: `workbench dashboards` (Voilà, preheated kernels) before a
real db-api, driven by Debian's Chromium through Playwright.

Every dashboard renders its plots (decoded images) and widgets; the Schools filter and search
change the caterpillar plot; a preheated page shows data written after its kernel started; only
the web app's origin may frame a dashboard. Screenshots: tests/artifacts/screenshots/.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from db_api.server import start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import LIVE_DASHBOARDS_PATH
from tests.conftest import TOKEN
from tests.pipeline_lib.dashboards import populate
from tests.processes import wait_for
from tests.wire_servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.spark]

PLOTS = {"overview": 4, "models": 4, "data_quality": 3}
LOAD_MS = 60_000  # a page whose preheated kernel is in use starts a fresh one: seconds on 2 busy cores
Screenshot = Callable[[Page, str], Path]


@dataclass
class Site:
    url: str
    client: DbApiClient
    log: Path
    framing: FramingPage  # holds the web app's port in the settings Voilà was given
    populated: bool = False
    problems: list[str] = field(default_factory=list)

    def kernels_waiting(self) -> int:
        """Preheated kernels that reached `wait_for_viewer` (each opens Voilà's request socket)."""
        return len(re.findall(r"101 GET \S*/voila/query/", self.log.read_text(errors="replace")))


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> populate.Snapshot:
    return populate.build_snapshot(tmp_path_factory.mktemp("snapshot"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """An empty db-api and the dashboards command before it, every pool preheated and waiting."""
    folder = tmp_path_factory.mktemp("dashboards")
    running = start_server(SqliteStore(folder / "store.sqlite3"), "127.0.0.1:0", token=TOKEN)
    client = DbApiClient(f"127.0.0.1:{running.port}", TOKEN)
    # Bound for the module's life, so no other test's server can take the port Voilà trusts.
    framing = FramingPage(folder / "framing")
    port = free_port()
    env = {
        **os.environ,
        "WORKBENCH_DB_API_ADDRESS": client.address,
        "WORKBENCH_DB_API_TOKEN": TOKEN,
        "WORKBENCH_DATA_DIR": str(folder / "var"),
        "WORKBENCH_WEB_PORT": str(framing.port),
    }
    log = folder / "voila.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline_lib.cli.dashboards", "--port", str(port), "--pool-size", "1"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    site = Site(f"http://127.0.0.1:{port}{LIVE_DASHBOARDS_PATH}", client, log, framing)
    try:
        wait_for(lambda: site.kernels_waiting() >= 4, 120, "four preheated kernels")
        yield site
    finally:
        process.terminate()
        process.wait(60)
        framing.close()
        client.close()
        running.stop(grace=1)


@pytest.fixture
def filled(site: Site, snapshot: populate.Snapshot) -> Site:
    """The site with the snapshot's data (written once, after the kernels were preheated)."""
    if not site.populated:
        populate.write(site.client, snapshot)
        site.populated = True
    return site


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A desktop-sized page; script errors on a dashboard fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(LOAD_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"script errors: {errors}"


def _whole_page(page: Page, screenshot: Screenshot, step: str) -> None:
    """Voilà scrolls inside the page, so a full-page screenshot needs a viewport as tall as it."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    size = page.viewport_size or {"width": 1280, "height": 900}
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 12_000)})
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { e.scrollTop = 0; })")
    screenshot(page, step)
    page.set_viewport_size(size)


def _open(page: Page, site: Site, name: str) -> list[str]:
    """Open the dashboard; the list fills with every request the page makes to another site."""
    origin = urlsplit(site.url).netloc
    outside: list[str] = []
    page.on(
        "request", lambda r: outside.append(r.url) if urlsplit(r.url).netloc not in (origin, "") else None
    )
    page.goto(f"{site.url}/voila/render/{name}.ipynb", wait_until="domcontentloaded")
    expect(page.get_by_role("heading", level=1)).to_be_visible(timeout=LOAD_MS)
    return outside


def _plots_decoded(page: Page, count: int) -> None:
    images = page.locator("figure.wb-plot img")
    expect(images).to_have_count(count, timeout=LOAD_MS)
    for i in range(count):
        image = images.nth(i)
        image.scroll_into_view_if_needed()
        assert image.evaluate("img => img.complete && img.naturalWidth > 200"), f"plot {i} is not drawn"


def _no_cell_errors(page: Page) -> None:
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and "There was an error when executing cell" not in text


def test_a_preheated_dashboard_shows_data_written_after_its_kernel_started(
    page: Page, filled: Site, screenshot: Screenshot
) -> None:
    _open(page, filled, "overview")
    expect(page.get_by_role("heading", name="Headline numbers")).to_be_visible()
    expect(page.get_by_text("No data yet.")).to_have_count(0)
    assert "Using pre-heated kernel" in filled.log.read_text()
    _plots_decoded(page, PLOTS["overview"])
    _no_cell_errors(page)
    _whole_page(page, screenshot, "overview")


@pytest.mark.parametrize("name", ["models", "data_quality"])
def test_a_dashboard_renders_every_plot(name: str, page: Page, filled: Site, screenshot: Screenshot) -> None:
    outside = _open(page, filled, name)
    _plots_decoded(page, PLOTS[name])
    _no_cell_errors(page)
    assert outside == []  # no font or style from a CDN: a viewer's address goes to no other site
    _whole_page(page, screenshot, name)


def _caterpillar(page: Page) -> str:
    image = page.locator(".widget-output figure.wb-plot img").first
    expect(image).to_be_visible(timeout=LOAD_MS)
    return image.get_attribute("src") or ""


def test_the_schools_filter_and_search_change_the_caterpillar_plot(
    page: Page, filled: Site, snapshot: populate.Snapshot, screenshot: Screenshot
) -> None:
    _open(page, filled, "schools")
    first = _caterpillar(page)
    assert page.locator(".widget-output figure.wb-plot img").evaluate("img => img.naturalWidth > 200")
    _whole_page(page, screenshot, "schools")

    page.locator(".widget-dropdown select").select_option("private")
    expect(page.locator(".widget-output figcaption")).to_contain_text("private schools;")
    private = _caterpillar(page)
    assert private != first
    expected = len(snapshot.population.schools.query("sector == 'private'"))
    expect(page.locator(".widget-output figcaption")).to_contain_text(f"{expected} private schools;")
    _whole_page(page, screenshot, "schools-private")

    school = snapshot.population.schools.query("sector == 'private'").iloc[0]
    search = page.locator(".widget-text input")
    search.fill(school["name"])
    search.press("Enter")
    expect(page.locator(".widget-output figcaption")).to_contain_text("(highlighted)")
    assert _caterpillar(page) != private
    expect(page.locator(".widget-output table tbody tr").first).to_contain_text(school["name"])
    _whole_page(page, screenshot, "schools-search")

    page.get_by_role("button", name="School difference in SES slope").click()
    expect(page.locator(".widget-output figure.wb-plot img").first).to_have_attribute(
        "alt", re.compile("school difference in SES slope", re.IGNORECASE)
    )
    _no_cell_errors(page)


class FramingPage:
    """A page on a free 127.0.0.1 port that frames a dashboard, like the web app's results page."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.folder = folder
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def frame(self, target: str) -> str:
        """Frame the dashboard at `target`; return the framing page's URL."""
        (self.folder / "index.html").write_text(
            "<!doctype html><title>framing</title>"
            f'<iframe id="dash" src="{target}" width="1200" height="800"></iframe>'
        )
        return f"http://127.0.0.1:{self.port}/index.html"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_only_the_web_app_origin_may_frame_a_dashboard(
    browser: Browser, filled: Site, tmp_path: Path, screenshot: Screenshot
) -> None:
    target = f"{filled.url}/voila/render/data_quality.ipynb"
    allowed = filled.framing.frame(target)
    other = FramingPage(tmp_path / "refused")
    refused = other.frame(target)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(LOAD_MS)
    try:
        page = context.new_page()
        page.goto(allowed)
        frame = page.frame_locator("#dash")
        expect(frame.locator("figure.wb-plot img")).to_have_count(PLOTS["data_quality"], timeout=LOAD_MS)
        _whole_page(page, screenshot, "framed-by-web-app")

        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(refused)
        wait_for(
            lambda: any("frame-ancestors" in text for text in console), 30, "the browser to refuse the frame"
        )
        expect(page.frame_locator("#dash").locator("figure.wb-plot")).to_have_count(0)
    finally:
        context.close()
        other.close()
