"""Viewing a run's output notebook while papermill rewrites it, and the bounds on rendering it: each
version rendered once and kept, a few renders at once, and no render of a notebook too large."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.web_app.conftest import WebStack
from tests.web_app.test_runs_pages import _archived_notebook, _record, _signed_in
from web_app.run_notebooks import (
    NotebookVersion,
    RenderedCache,
    RendersBusy,
    RunNotebookRenders,
)

ARCHIVE_DAY = ("2026", "11", "01")
LONG_AGO_NS = 1_700_000_000 * 10**9  # a settled modification time


def _run_with_notebook(stack: WebStack, run_id: str, status: str) -> Path:
    """A run whose output notebook papermill has written, inside the run archive."""
    path = _archived_notebook(stack.settings.run_archive.joinpath(*ARCHIVE_DAY), f"{run_id}.ipynb")
    stack.db.put_document("runs", run_id, _record(run_id, "clean", status, 30, path))
    return path


def _rewrite_same_size(path: Path, old: str, new: str, mtime_ns: int) -> None:
    assert len(old) == len(new)
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_half_written_notebook_of_a_running_run_says_reload_not_500(stack: WebStack) -> None:
    path = _run_with_notebook(stack, "clean-9", "running")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # papermill truncated it and is writing it again
    with _signed_in(stack, "analyst") as http:
        response = http.get("/runs/clean-9/notebook")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "in progress" in response.text and "reload" in response.text.lower()


def test_a_cut_short_notebook_of_a_run_whose_runner_died_says_so_not_reload(stack: WebStack) -> None:
    """Still "running" (its runner was killed), its file cut short and no longer written: asked to
    reload for ever before (review)."""
    path = _run_with_notebook(stack, "clean-9", "running")
    path.write_bytes(path.read_bytes()[:100])
    os.utime(path, ns=(LONG_AGO_NS, LONG_AGO_NS))
    with _signed_in(stack, "analyst") as http:
        response = http.get("/runs/clean-9/notebook")
    assert response.status_code == 404
    assert "cannot be shown" in response.text and "not a whole notebook" in response.text


def test_a_running_run_shows_its_notebook_as_far_as_it_has_got(stack: WebStack) -> None:
    _run_with_notebook(stack, "clean-9", "running")
    with _signed_in(stack, "analyst") as http:
        assert "in progress" in http.get("/runs/clean-9").text
        notebook = http.get("/runs/clean-9/notebook")
    assert notebook.status_code == 200 and "read 120 records" in notebook.text


def test_a_damaged_notebook_of_a_finished_run_says_so_not_500(stack: WebStack) -> None:
    path = _run_with_notebook(stack, "clean-9", "failed")
    path.write_text('{"cells": [')
    with _signed_in(stack, "analyst") as http:
        response = http.get("/runs/clean-9/notebook")
    assert response.status_code == 404
    assert "cannot be shown" in response.text and "not a whole notebook" in response.text


def test_a_finished_run_notebook_is_rendered_once_per_version(stack: WebStack) -> None:
    path = _run_with_notebook(stack, "clean-9", "failed")
    os.utime(path, ns=(LONG_AGO_NS, LONG_AGO_NS))
    with _signed_in(stack, "analyst") as http:
        assert "read 120 records" in http.get("/runs/clean-9/notebook").text
        # Same path, size and time: the same version to the cache, so the kept page is served.
        _rewrite_same_size(path, "read 120 records", "read 121 records", LONG_AGO_NS)
        assert "read 120 records" in http.get("/runs/clean-9/notebook").text
        # A new modification time is a new version: rendered again.
        _rewrite_same_size(path, "read 121 records", "read 122 records", LONG_AGO_NS + 10**9)
        assert "read 122 records" in http.get("/runs/clean-9/notebook").text


def test_a_notebook_too_large_to_render_gets_413_with_a_reason(stack: WebStack) -> None:
    path = _run_with_notebook(stack, "clean-9", "succeeded")
    stack.app.state.run_notebook_renders = RunNotebookRenders(max_bytes=path.stat().st_size - 1)
    with _signed_in(stack, "analyst") as http:
        response = http.get("/runs/clean-9/notebook")
    assert response.status_code == 413
    assert "shows notebooks of up to" in response.text and "Jupyter" in response.text
    assert response.headers["content-security-policy"].startswith("sandbox;")


class _HeldRenders:
    """A renderer whose renders wait until released, counting how many started."""

    def __init__(self) -> None:
        self.started = 0
        self.release = threading.Event()

    def __call__(self, path: Path, max_bytes: int) -> tuple[NotebookVersion, bytes, bool]:
        self.started += 1
        assert self.release.wait(30)
        stat = path.stat()
        return NotebookVersion.of(path, stat), path.name.encode(), True


def _notebooks(tmp_path: Path, count: int) -> list[Path]:
    paths = [tmp_path / f"n{i}.ipynb" for i in range(count)]
    for path in paths:
        path.write_text("{}")
    return paths


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_renders_past_the_limit_wait_then_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        held = _HeldRenders()
        renders = RunNotebookRenders(at_once=2, wait_seconds=0.05, render=held)
        first, second, third = _notebooks(tmp_path, 3)
        running = [asyncio.create_task(renders.page(p)) for p in (first, second)]
        await _until(lambda: held.started == 2)
        with pytest.raises(RendersBusy, match="2 notebooks at once"):
            await renders.page(third)
        held.release.set()
        assert await asyncio.gather(*running) == [b"n0.ipynb", b"n1.ipynb"]
        assert await renders.page(third) == b"n2.ipynb"

    asyncio.run(scenario())


def test_views_of_one_version_share_one_render_and_keep_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        held = _HeldRenders()
        renders = RunNotebookRenders(render=held)
        (notebook,) = _notebooks(tmp_path, 1)
        views = [asyncio.create_task(renders.page(notebook)) for _ in range(5)]
        await _until(lambda: held.started == 1)
        held.release.set()
        assert set(await asyncio.gather(*views)) == {b"n0.ipynb"}
        assert await renders.page(notebook) == b"n0.ipynb"
        assert held.started == 1

    asyncio.run(scenario())


def test_a_view_that_goes_away_keeps_its_render_slot_until_the_render_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        held = _HeldRenders()
        renders = RunNotebookRenders(at_once=1, wait_seconds=0.05, render=held)
        first, second = _notebooks(tmp_path, 2)
        gone = asyncio.create_task(renders.page(first))
        await _until(lambda: held.started == 1)
        gone.cancel()
        with pytest.raises(RendersBusy):  # the render in its thread still runs: its slot is held
            await renders.page(second)
        held.release.set()
        assert await renders.page(first) == b"n0.ipynb"

    asyncio.run(scenario())


def test_the_cache_drops_the_least_recently_viewed_past_its_bytes() -> None:
    cache = RenderedCache(max_bytes=10)
    a, b, c, huge = (NotebookVersion(name, 1, 1) for name in ("a", "b", "c", "huge"))
    cache.put(a, b"aaaa")
    cache.put(b, b"bbbb")
    assert cache.get(a) == b"aaaa"  # now b is the least recently viewed
    cache.put(c, b"cccc")
    assert cache.get(b) is None and cache.get(a) == b"aaaa" and cache.get(c) == b"cccc"
    cache.put(huge, b"x" * 11)  # larger than the whole cache: not kept, nothing dropped for it
    assert cache.get(huge) is None and cache.total_bytes == 8
