"""What every dashboard notebook does around its sections: get ready before anyone asks (Voilà's
preheated kernels run this part in advance), wait for a viewer, then show HTML.

The data is read after `wait_for_viewer`, so a preheated page shows the results as they are when
it is opened, not as they were when its kernel was started. A preheated kernel also reads and draws
the page ahead (`read_ahead`); when the data read for the viewer is the same, the sections drawn
ahead are shown at once instead of being drawn again (`section`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TypeVar

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.dashboards.source import (
    DataUnavailable,
    Results,
    connect,
    load_latest_finished,
    load_run_notebook,
)
from pipeline_lib.dashboards.viewer_request import wait_for_request
from pipeline_lib.runs import schedule
from pipeline_lib.runs.freshness import Freshness, assess, notebook_of
from pipeline_lib.settings import Settings, get_settings
from pipeline_lib.views import html
from pipeline_lib.views.style import warm_up
from pipeline_lib.views.style_sheet import CSS

NO_DATA = (
    "Results appear here after the first processing run: submit data, then run `workbench run all` "
    "(or wait for the schedule)."
)


def prepare() -> None:
    """The slow first-time work, so a viewer waits only for the data and the drawing: imports
    (most by importing the dashboard's module; the widgets here) and matplotlib's fonts and PNG
    renderer."""
    import ipywidgets  # noqa: F401  (the Schools explorer's)

    warm_up()


def preheated() -> bool:
    """Whether this is a Voilà kernel started before anyone asked for its page."""
    return os.environ.get("VOILA_PREHEAT") == "True"


def wait_for_viewer() -> None:
    """In a preheated Voilà kernel, block until a viewer opens the page; elsewhere return at once."""
    if preheated():
        wait_for_request()


R = TypeVar("R", bound=Results)
# The last drawing of each section: the data it was drawn from, and its HTML.
_drawn: dict[str, tuple[Results, str]] = {}


def section(draw: Callable[[R], str]) -> Callable[[R], str]:
    """Mark a dashboard module's function as a section of its page: drawn once per data read, so
    what `read_ahead` drew is shown without drawing it again."""
    name = f"{draw.__module__}.{draw.__qualname__}"

    @functools.wraps(draw)
    def drawn(results: R) -> str:
        kept = _drawn.get(name)
        if kept is not None and kept[0] is results:
            return kept[1]
        text = draw(results)
        _drawn[name] = (results, text)
        return text

    drawn.is_section = True  # type: ignore[attr-defined]
    return drawn


def sections(dashboard: ModuleType) -> list[Callable[[Results], str]]:
    """The functions of a dashboard module marked with `section`."""
    return [value for value in vars(dashboard).values() if getattr(value, "is_section", False)]


def read_ahead(dashboard: ModuleType) -> Results | None:
    """In a preheated kernel, before anyone opens the page: read the dashboard's data (its `load`)
    and draw each of its sections with it. `load(dashboard.load, ahead)` then keeps what was drawn
    if the viewer's data is the same. Elsewhere (one kernel per viewer, a snapshot) nothing: None."""
    if not preheated():
        return None
    results = load(dashboard.load)
    for draw in sections(dashboard):
        draw(results)
    return results


def same_figures(one: Results, other: Results) -> bool:
    """Whether two reads found the same documents, runs and notices (their freshness aside, which
    depends on when they were read)."""
    return type(one) is type(other) and dataclasses.replace(one, freshness=None) == dataclasses.replace(
        other, freshness=None
    )


def k_min_group() -> int:
    return get_settings().k_min_group


def show(text: str) -> None:
    from IPython.display import HTML, display

    display(HTML(text))


def load(loader: Callable[[DbApiClient, int], R], ahead: R | None = None) -> R | Results:
    """What `loader` reads with a fresh client, with how fresh it is, or empty `Results` saying
    why it could not. When it is what `ahead` (`read_ahead`) found, `ahead` itself, its freshness
    brought up to now, so the sections drawn with it are shown as drawn."""
    k = k_min_group()
    try:
        with connect() as client:
            results = loader(client, k)
            results.freshness = freshness(client, results, get_settings())
    except DataUnavailable as exc:
        return Results(k, error=str(exc))
    if ahead is not None and same_figures(ahead, results):
        ahead.freshness = results.freshness
        return ahead
    return results


def freshness(
    client: DbApiClient, results: Results, settings: Settings, now: dt.datetime | None = None
) -> Freshness | None:
    """How old the page's newest figures are, judged by the schedule (or `stale_after`) and the
    latest run of the notebook that made them; None without figures. The page is public, so a
    failed run is named with its exception but not its message."""
    newest = results.newest()
    if newest is None:
        return None
    notebook = notebook_of(newest.run_id) or load_run_notebook(client, newest.run_id)
    try:
        jobs = schedule.load(settings.schedule_file)
    except schedule.ScheduleError:
        jobs = []  # a schedule that cannot be read sets no limit; `workbench scheduler` says why
    return assess(
        computed_at=newest.computed_at,
        run_id=newest.run_id,
        notebook=notebook,
        latest_run=load_latest_finished(client, notebook) if notebook else None,
        jobs=jobs,
        stale_after=settings.stale_after,
        now=now or dt.datetime.now(dt.UTC),
    )


def opening(results: Results) -> str:
    """The style sheet, then what the page is about to show: why there is nothing, or as of when."""
    if results.error:
        return CSS + html.block(
            html.notice(results.error, "warning", "The results cannot be read right now.")
        )
    if not results:
        return CSS + no_data()
    return CSS + as_of(results)


def as_of(results: Results) -> str:
    """When the figures were computed and by which run, and a warning if they are out of date or
    the latest run of their notebook failed."""
    fresh = results.freshness
    if fresh is None:
        return ""
    return html.block(
        f'<p class="wb-meta">Figures computed <strong>{html.esc(fresh.age)}</strong> '
        f"({fresh.computed_at:%Y-%m-%d %H:%M} UTC) by run <code>{html.esc(fresh.run_id)}</code>. "
        f"Groups of fewer than {results.k} students are hidden.</p>"
        + html.warnings(fresh.warnings, "These figures may be out of date.")
    )


def no_data(what: str = "No data yet") -> str:
    return html.block(html.notice(NO_DATA, "empty", f"{what}."))


def notices(results: Results, keys: Iterable[str]) -> str:
    """Where the documents `keys` show: a line for each one withheld from public views or shown as
    published earlier, its title and why ("" when none is)."""
    lines = []
    for key in keys:
        found = results.get(key)
        title = f"{found.title if found else key}:"
        if key in results.withheld:
            lines.append(html.withheld(results.withheld[key], title))
        elif key in results.not_updated:
            lines.append(html.not_updated(results.not_updated[key], title))
    return "".join(lines)
