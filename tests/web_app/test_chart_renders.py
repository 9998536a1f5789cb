"""A chart's PNG is costly to draw (~180 ms of CPU): each SVG is drawn once and kept, requests for one
SVG at once share its drawing, and at most a few are drawn at a time; past that a request is asked to
come back (503 with Retry-After) rather than queue on the thread pool the rest of the app shares."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline_lib.process.results import ResultDocument, suppress
from tests.processes import wait_for
from tests.web_app.conftest import WebStack
from tests.web_app.test_schools_and_results import _result
from web_app.chart_renders import ChartRenders, ChartsBusy
from web_app.routes.result_views import chart_png, chart_svg


class _HeldDrawings:
    """A renderer whose drawings wait until released (when `hold`), counting the SVGs it was given."""

    def __init__(self, hold: bool = True) -> None:
        self.drawn: list[str] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, svg: str) -> bytes:
        self.drawn.append(svg)
        assert self.release.wait(30)
        return f"png of {svg}".encode()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_drawing_past_the_limit_waits_then_is_refused() -> None:
    held = _HeldDrawings()
    renders = ChartRenders(at_once=1, wait_seconds=0.05, render=held)
    first = asyncio.create_task(renders.png("<svg>a</svg>"))
    await _until(lambda: len(held.drawn) == 1)
    with pytest.raises(ChartsBusy, match="1 chart at once"):
        await renders.png("<svg>b</svg>")
    held.release.set()
    assert await first == b"png of <svg>a</svg>"
    assert held.drawn == ["<svg>a</svg>"]


async def test_requests_for_one_svg_at_once_share_one_drawing() -> None:
    held = _HeldDrawings()
    renders = ChartRenders(at_once=1, wait_seconds=0.05, render=held)
    requests = [asyncio.create_task(renders.png("<svg>a</svg>")) for _ in range(5)]
    await _until(lambda: len(held.drawn) == 1)
    await asyncio.sleep(0.1)  # past the slot wait: the others did not wait for a slot of their own
    held.release.set()
    assert set(await asyncio.gather(*requests)) == {b"png of <svg>a</svg>"}
    assert held.drawn == ["<svg>a</svg>"]


async def test_a_drawn_chart_is_served_from_the_cache_afterwards() -> None:
    drawings = _HeldDrawings(hold=False)
    renders = ChartRenders(render=drawings)
    assert await renders.png("<svg>a</svg>") == b"png of <svg>a</svg>"
    assert await renders.png("<svg>a</svg>") == b"png of <svg>a</svg>"
    assert drawings.drawn == ["<svg>a</svg>"]


async def test_the_cache_drops_the_least_recently_used_past_its_bytes() -> None:
    drawings = _HeldDrawings(hold=False)
    png_bytes = len(b"png of <svg>a</svg>")
    renders = ChartRenders(cache_bytes=2 * png_bytes, render=drawings)
    a, b, c = "<svg>a</svg>", "<svg>b</svg>", "<svg>c</svg>"
    for svg in (a, b, a, c):  # a used after b: b is the one dropped for c
        await renders.png(svg)
    assert renders.cache.total_bytes == 2 * png_bytes
    await renders.png(a)
    await renders.png(c)
    assert drawings.drawn == [a, b, c]
    await renders.png(b)
    assert drawings.drawn == [a, b, c, b]


async def test_a_png_larger_than_the_whole_cache_is_served_but_not_kept() -> None:
    drawings = _HeldDrawings(hold=False)
    renders = ChartRenders(cache_bytes=4, render=drawings)
    assert await renders.png("<svg>a</svg>") == b"png of <svg>a</svg>"
    assert renders.cache.total_bytes == 0


def _seed(stack: WebStack, key: str, sizes: list[int]) -> None:
    stack.db.put_document("processed", key, _result(key, sizes))


def test_two_downloads_of_one_chart_png_are_drawn_once(stack: WebStack) -> None:
    assert isinstance(stack.app.state.chart_renders, ChartRenders)
    drawn: list[str] = []

    def counted(svg: str) -> bytes:
        drawn.append(svg)
        return chart_png(svg)

    stack.app.state.chart_renders = ChartRenders(render=counted)
    _seed(stack, "descriptives:sector", [40, 3])
    with stack.client(headers=stack.auth("reader")) as http:
        first = http.get("/results/descriptives:sector/chart.png")
        second = http.get("/results/descriptives:sector/chart.png")
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == "image/png" and first.content == second.content
    doc = ResultDocument.model_validate(_result("descriptives:sector", [40, 3]))
    reader_svg = chart_svg(suppress(doc, stack.settings.k_min_group, analyst=False))
    assert drawn == [reader_svg] and first.content == chart_png(reader_svg)


def test_a_chart_png_while_the_drawings_are_busy_is_503_with_retry_after(stack: WebStack) -> None:
    held = _HeldDrawings()
    stack.app.state.chart_renders = ChartRenders(at_once=1, wait_seconds=0.05, render=held)
    # Two results whose charts differ (an equal SVG would share the first one's drawing).
    _seed(stack, "descriptives:a", [40, 3])
    _seed(stack, "descriptives:b", [40, 30])
    headers = stack.auth("reader")
    with stack.client(headers=headers) as http, ThreadPoolExecutor(1) as pool:
        # Another client holds the one slot, drawing another result's chart.
        first = pool.submit(_get, stack, headers, "/results/descriptives:a/chart.png")
        try:
            wait_for(lambda: bool(held.drawn), 10, "the first chart's drawing to start")
            busy = http.get("/results/descriptives:b/chart.png")
        finally:
            held.release.set()
        assert first.result(timeout=30) == 200
    assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
    assert busy.headers["content-type"] == "application/problem+json"
    assert "charts" in busy.json()["title"] and "try again" in busy.json()["title"]


def _get(stack: WebStack, headers: dict[str, str], path: str) -> int:
    with stack.client(headers=headers) as http:
        return http.get(path).status_code
