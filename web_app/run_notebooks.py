"""An archived run notebook rendered to HTML, so nobody needs Jupyter to see why a run failed.

The notebook's outputs are whatever the notebook printed, so the page is sanitised (nh3) and
served with a CSP that sandboxes it (no scripts, an opaque origin without the session cookie)
inside the run page: two walls, either of which stops a script.

Rendering is costly (an 18 MB notebook: ~1.3 s of CPU; memory ~6 times the file's size), so each
version of a notebook is rendered once and kept (`RenderedCache`), a few renders run at once in
worker threads (`RunNotebookRenders`), and a notebook over `MAX_NOTEBOOK_BYTES` is not rendered.
"""

from __future__ import annotations

import asyncio
import html
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from starlette.concurrency import run_in_threadpool

from web_app.bytes_cache import BytesCache
from web_app.sanitise import clean_html

NOTEBOOK_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'self'"
)
MiB = 1024 * 1024
# Measured: rendering takes about 6 times the notebook's size in memory (50 MB: +280 MB, 2.5 s), so
# two renders at once of 32 MiB stay near 400 MB. Run notebooks print summaries and plots (~100 KB
# each): far below this.
MAX_NOTEBOOK_BYTES = 32 * MiB
CACHE_BYTES = 128 * MiB  # rendered pages kept, least recently viewed dropped first
RENDERS_AT_ONCE = 2
SLOT_WAIT_SECONDS = 5.0  # a view waits this long for a render slot, then is asked to reload
# papermill rewrites the notebook in place (truncate, then write) after each cell: a read that meets
# a half file is tried again after a pause.
READ_ATTEMPTS = 3
REREAD_PAUSE_SECONDS = 0.1
# A file modified this recently may be rewritten within the same timestamp tick (coarse on some file
# systems) at the same size: its rendering is served but not kept, so no stale page outlives it.
SETTLED_NS = 2_000_000_000


class NotArchived(LookupError):
    pass


class NotebookTooLarge(ValueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"This run's output notebook is {size / MiB:.1f} MiB: the web app shows notebooks of up to "
            f"{limit / MiB:.0f} MiB (rendering takes about six times a notebook's size in memory)."
        )


class NotebookUnreadable(ValueError):
    """The file does not read as a notebook: half-written by a running run, or damaged."""


class RendersBusy(RuntimeError):
    def __init__(self, at_once: int) -> None:
        super().__init__(
            f"The server is rendering {at_once} notebooks at once, its limit: reload in a few seconds."
        )


def archived_path(output_path: str | None, archive: Path) -> Path:
    """The run's output notebook, only if it lies inside the run archive this server serves."""
    if not output_path:
        raise NotArchived("this run has no output notebook (it never started executing)")
    path = Path(output_path).resolve()
    if not path.is_relative_to(archive.resolve()):
        raise NotArchived("the output notebook is outside this server's run archive")
    if not path.is_file():
        raise NotArchived(f"the output notebook is not on this server ({path.name})")
    return path


@dataclass(frozen=True)
class NotebookVersion:
    """One version of a notebook file, as far as its metadata tells versions apart."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, stat: os.stat_result) -> NotebookVersion:
        return cls(str(path), stat.st_size, stat.st_mtime_ns)


def read_notebook(path: Path, max_bytes: int) -> tuple[NotebookVersion, nbformat.NotebookNode]:
    """One whole version of the file, read again after a pause while it is half-written."""
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return _read_once(path, max_bytes)
        except NotebookUnreadable:
            time.sleep(REREAD_PAUSE_SECONDS)
    return _read_once(path, max_bytes)


def _read_once(path: Path, max_bytes: int) -> tuple[NotebookVersion, nbformat.NotebookNode]:
    try:
        with path.open("rb") as file:
            before = os.fstat(file.fileno())
            if before.st_size > max_bytes:
                raise NotebookTooLarge(before.st_size, max_bytes)
            data = file.read(max_bytes + 1)  # bounded even if it grew since
            after = os.fstat(file.fileno())
    except OSError as exc:
        raise NotebookUnreadable(f"the file cannot be read ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise NotebookTooLarge(len(data), max_bytes)
    version = NotebookVersion.of(path, after)
    if version != NotebookVersion.of(path, before) or len(data) != after.st_size:
        raise NotebookUnreadable("the file changed while it was read")
    try:
        return version, nbformat.reads(data.decode("utf-8"), as_version=4)
    except ValueError:  # not JSON (half-written, or cut short), or not UTF-8
        raise NotebookUnreadable("it is not a whole notebook (cut short, or not JSON)") from None
    except Exception:  # JSON, but nbformat cannot make a notebook of it
        raise NotebookUnreadable("it is JSON but not a notebook") from None


def render_html(notebook: nbformat.NotebookNode) -> str:
    """Static HTML of the notebook, sanitised with nh3 (scripts, frames, forms, event handlers and
    `javascript:` links removed; nbconvert's styles kept). A second wall behind the sandbox CSP."""
    from nbconvert import HTMLExporter

    body, _resources = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    cleaned = clean_html(body)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        f'<body class="jp-Notebook" data-jp-theme-light="true">{cleaned}</body></html>'
    )


def notice_html(message: str) -> str:
    """A one-sentence page in the notebook's frame, for when the notebook cannot be shown."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        f'<body><p class="notice">{html.escape(message)}</p></body></html>'
    )


def render_archived(path: Path, max_bytes: int) -> tuple[NotebookVersion, bytes, bool]:
    """The page of the file's current version, and whether that version has settled (may be kept).
    Blocking: run it in a worker thread."""
    version, notebook = read_notebook(path, max_bytes)
    settled = version.mtime_ns < time.time_ns() - SETTLED_NS
    return version, render_html(notebook).encode(), settled


class RenderedCache(BytesCache[NotebookVersion]):
    """Rendered pages by notebook version, least recently viewed dropped first past `max_bytes`."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        super().__init__(max_bytes)


Renderer = Callable[[Path, int], tuple[NotebookVersion, bytes, bool]]


class RunNotebookRenders:
    """Pages of archived run notebooks: each version rendered once and kept; at most `at_once`
    renders at a time, in worker threads, off the event loop. State lives on the event loop."""

    def __init__(
        self,
        max_bytes: int = MAX_NOTEBOOK_BYTES,
        cache_bytes: int = CACHE_BYTES,
        at_once: int = RENDERS_AT_ONCE,
        wait_seconds: float = SLOT_WAIT_SECONDS,
        render: Renderer = render_archived,
    ) -> None:
        self.max_bytes = max_bytes
        self.at_once = at_once
        self.wait_seconds = wait_seconds
        self.cache = RenderedCache(cache_bytes)
        self._render = render
        self._slots = asyncio.Semaphore(at_once)
        self._rendering: dict[NotebookVersion, asyncio.Task[bytes]] = {}

    async def page(self, path: Path) -> bytes:
        """The notebook's page. Raises NotebookTooLarge, NotebookUnreadable or RendersBusy."""
        try:
            stat = path.stat()
        except OSError as exc:
            raise NotebookUnreadable(f"the file cannot be read ({exc.strerror})") from None
        if stat.st_size > self.max_bytes:
            raise NotebookTooLarge(stat.st_size, self.max_bytes)
        version = NotebookVersion.of(path, stat)
        cached = self.cache.get(version)
        if cached is not None:
            return cached
        task = self._rendering.get(version)
        if task is None:  # views of one version at once share its render
            task = asyncio.create_task(self._render_in_slot(path))
            self._rendering[version] = task
            task.add_done_callback(lambda done: self._finished(version, done))
        # Shielded: a view that goes away leaves the render (and its slot) to finish for the others.
        return await asyncio.shield(task)

    async def _render_in_slot(self, path: Path) -> bytes:
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_seconds)
        except TimeoutError:
            raise RendersBusy(self.at_once) from None
        try:
            version, page, settled = await run_in_threadpool(self._render, path, self.max_bytes)
        finally:
            self._slots.release()
        if settled:
            self.cache.put(version, page)
        return page

    def _finished(self, version: NotebookVersion, task: asyncio.Task[bytes]) -> None:
        self._rendering.pop(version, None)
        if not task.cancelled():
            task.exception()  # retrieved, so a render no view waited for does not log a warning
