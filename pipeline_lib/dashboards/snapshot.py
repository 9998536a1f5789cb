"""Dashboard snapshots: each dashboard notebook executed as Voilà runs it (its code cells in a
kernel, sources hidden), its outputs kept as one self-contained HTML body, stored in `dashboards`
for the web app to serve to every reader behind its sign-in, and archived with the run that
prompted it.

One kernel renders every dashboard in turn (they share their imports: the first pays for them), so
refreshing all of them costs one kernel start. Widgets need a kernel, so in a snapshot the
dashboards draw their static equivalent instead (`catalog.is_snapshot`). A dashboard that fails to
render keeps its previous snapshot; the failure is returned, to be reported.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import DASHBOARDS
from pipeline_lib.dashboards.catalog import SNAPSHOT_ENV, dashboard_name, dashboard_notebooks
from pipeline_lib.settings import Settings, child_environment
from pipeline_lib.wire.requests import FENCE_ENV

if TYPE_CHECKING:
    from pipeline_lib.runs.kernel_ahead import KernelAhead

log = logging.getLogger(__name__)

# A dashboard cell that runs longer than this fails the snapshot (the Voilà page would hang too).
CELL_TIMEOUT_SECONDS = 300
_HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Snapshot:
    """One dashboard as rendered: `body` is HTML (its own style sheet inline, images as data URLs);
    `error` says why there is no body."""

    name: str
    title: str
    rendered_at: dt.datetime
    seconds: float
    run_id: str | None
    body: str = ""
    error: str | None = None

    def document(self) -> dict[str, Any]:
        """What `dashboards` keeps, under the dashboard's name."""
        return {
            "_id": self.name,
            "title": self.title,
            "html": self.body,
            "rendered_at": self.rendered_at,
            "render_seconds": round(self.seconds, 3),
            "run_id": self.run_id,
        }


def title_of(notebook: Any, name: str) -> str:
    """The first `# heading` of the notebook's markdown, else its name in words."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            found = _HEADING.search(cell.source)
            if found:
                return found.group(1).strip()
    return name.replace("_", " ").capitalize()


def body_of(notebook: Any) -> str:
    """The page a viewer sees: markdown cells as HTML, then each code cell's HTML outputs (sources,
    printed text and plain-text results left out, as Voilà's `strip_sources` does)."""
    import mistune

    parts: list[str] = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            parts.append(f'<div class="wb-markdown">{mistune.html(cell.source)}</div>')
        elif cell.cell_type == "code":
            parts.extend(
                output["data"]["text/html"]
                for output in cell.get("outputs", [])
                if output.get("output_type") in ("display_data", "execute_result")
                and "text/html" in output.get("data", {})
            )
    return "\n".join(parts)


def rendering_environment(settings: Settings) -> dict[str, str]:
    """The rendering kernel's environment: the runs', drawing without widgets, never waiting for a
    viewer."""
    env = {**child_environment(settings), SNAPSHOT_ENV: "1"}
    env.pop("VOILA_PREHEAT", None)
    env.pop(FENCE_ENV, None)  # rendered beside a run (`render_early`): it writes nothing, under no lease
    return env


def kernel_ahead(settings: Settings) -> KernelAhead | None:
    """The rendering kernel, started now (while the last run works) and importing what the
    dashboards import; None if there is nothing to render or it cannot start."""
    from pipeline_lib.runs.adopted_kernel import take_warm
    from pipeline_lib.runs.kernel_ahead import KernelAhead

    paths = servable(settings)
    if not paths or not settings.dashboard_snapshots:
        return None
    env = rendering_environment(settings)
    warm = take_warm(paths[0], settings, env)
    if warm is not None:
        return warm
    try:
        return KernelAhead(paths[0], env, imports_of=paths)
    except Exception as exc:  # rendering then starts its own kernel
        log.warning("could not start the rendering kernel ahead: %s", exc)
        return None


def servable(settings: Settings) -> list[Path]:
    """The dashboard notebooks that get snapshots."""
    return [path for path in dashboard_notebooks(settings) if dashboard_name(path)]


def render(
    paths: Sequence[Path],
    settings: Settings,
    *,
    run_id: str | None = None,
    kernel: KernelAhead | None = None,
) -> list[Snapshot]:
    """Execute each dashboard notebook in one kernel (`kernel`, started ahead, if it can be used),
    in order, and keep what each shows."""
    try:
        return _render(paths, settings, run_id, kernel)
    finally:
        if kernel is not None:
            # Its pages are rendered and it wrote nothing: killing it spares the command waiting for
            # its interpreter's exit (~0.4 s with the dashboards' imports before runs' kernels froze
            # their heap at exit, `runs/quick_exit.py`; less since, but never nothing).
            kernel.shut_down(now=True)


def _render(
    paths: Sequence[Path], settings: Settings, run_id: str | None, kernel: KernelAhead | None
) -> list[Snapshot]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from pipeline_lib.runs.kernel import ensure_kernel

    if not paths:
        return []
    notebooks = [nbformat.read(path, as_version=4) for path in paths]
    env = rendering_environment(settings)
    client = NotebookClient(
        notebooks[0],
        km=kernel.take(env) if kernel is not None and kernel.path.parent == paths[0].parent else None,
        kernel_name=ensure_kernel(),
        kernel_manager_class="pipeline_lib.runs.kernel.LocalKernelManager",
        timeout=CELL_TIMEOUT_SECONDS,
        allow_errors=False,
    )
    snapshots = []
    with client.setup_kernel(cwd=str(paths[0].parent), env=env):
        for path, notebook in zip(paths, notebooks, strict=True):
            name = dashboard_name(path) or path.stem
            started, at = time.perf_counter(), dt.datetime.now(dt.UTC)
            client.nb = notebook
            client.reset_execution_trackers()
            error = None
            try:
                for index, cell in enumerate(notebook.cells):
                    if cell.cell_type == "code":
                        client.execute_cell(cell, index)
            except CellTimeoutError:
                error = f"a cell ran longer than {CELL_TIMEOUT_SECONDS} s"
            except CellExecutionError as exc:
                error = f"{exc.ename}: {exc.evalue}"
            seconds = time.perf_counter() - started
            snapshots.append(
                Snapshot(
                    name,
                    title_of(notebook, name),
                    at,
                    seconds,
                    run_id,
                    body="" if error else body_of(notebook),
                    error=error,
                )
            )
    return snapshots


# How far ahead of this host's clock a kept snapshot's start may be and still count as later.
FUTURE_SKEW = dt.timedelta(minutes=5)


def store(client: DbApiClient, snapshots: Iterable[Snapshot]) -> None:
    """Keep each rendered snapshot as its dashboard's latest, unless one that began rendering later
    is kept already; a failed one leaves the last kept. Renders run beside each other (a scheduled
    clean's and a process run's, each after its run): the older one finishing last replaced the
    newer figures until the next run. (Read, then written: two stores of one dashboard within the
    same few milliseconds may still cross.)"""
    for snapshot in snapshots:
        if snapshot.error is None and not _later_kept(client, snapshot):
            client.put_document(DASHBOARDS, snapshot.name, snapshot.document())


def _later_kept(client: DbApiClient, snapshot: Snapshot) -> bool:
    kept = client.get_document(DASHBOARDS, snapshot.name)
    rendered = kept.get("rendered_at") if kept is not None else None
    if not isinstance(rendered, dt.datetime):
        return False
    if rendered.tzinfo is None:  # stored dates come back without their zone: written in UTC
        rendered = rendered.replace(tzinfo=dt.UTC)
    if rendered > dt.datetime.now(dt.UTC) + FUTURE_SKEW:
        return False  # from a clock far ahead (another host's, or one stepped back since): no bar
    if rendered > snapshot.rendered_at:
        log.info("dashboard snapshot not kept: a later one is", extra={"dashboard": snapshot.name})
        return True
    return False


def archive(folder: Path, snapshots: Iterable[Snapshot]) -> list[Path]:
    """Write each rendered snapshot as `<folder>/<name>.html`, a page that opens on its own."""
    from html import escape

    from pipeline_lib.views.style_sheet import CSS

    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for snapshot in snapshots:
        if snapshot.error is not None:
            continue
        path = folder / f"{snapshot.name}.html"
        path.write_text(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(snapshot.title)}</title>{CSS}</head><body>{snapshot.body}</body></html>\n",
            encoding="utf-8",
        )
        written.append(path)
    return written


def refresh(
    settings: Settings,
    client: DbApiClient,
    *,
    run_id: str | None,
    folder: Path | None,
    kernel: KernelAhead | None = None,
) -> list[Snapshot]:
    """Render every dashboard that can be served (in `kernel`, started ahead, if given), keep each
    as its latest, and archive the pages in `folder` (the run's, when a run prompted it)."""
    snapshots = render(servable(settings), settings, run_id=run_id, kernel=kernel)
    keep(client, snapshots, folder)
    return snapshots


def keep(client: DbApiClient, snapshots: Sequence[Snapshot], folder: Path | None) -> None:
    """Store each rendered snapshot as its dashboard's latest, and archive the pages in `folder`."""
    store(client, snapshots)
    if folder is not None:
        archive(folder, snapshots)
