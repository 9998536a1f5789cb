"""What every dashboard notebook does around its sections: get ready before anyone asks (Voilà's
preheated kernels run this part in advance), wait for a viewer, then show HTML.

The data is read after `wait_for_viewer`, so a preheated page shows the results as they are when
it is opened, not as they were when its kernel was started.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.dashboards.source import (
    DataUnavailable,
    Results,
    connect,
    load_latest_finished,
    load_run_notebook,
)
from pipeline_lib.runs import schedule
from pipeline_lib.runs.freshness import Freshness, assess, notebook_of
from pipeline_lib.settings import Settings, get_settings
from pipeline_lib.views import html
from pipeline_lib.views.style import warm_up

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


def wait_for_viewer() -> None:
    """In a preheated Voilà kernel, block until a viewer opens the page; elsewhere return at once."""
    if os.environ.get("VOILA_PREHEAT") == "True":
        from voila.utils import wait_for_request

        wait_for_request()


def k_min_group() -> int:
    return get_settings().k_min_group


def show(text: str) -> None:
    from IPython.display import HTML, display

    display(HTML(text))


def load(loader: Callable[[DbApiClient, int], Results]) -> Results:
    """What `loader` reads with a fresh client, with how fresh it is, or empty `Results` saying
    why it could not."""
    k = k_min_group()
    try:
        with connect() as client:
            results = loader(client, k)
            results.freshness = freshness(client, results, get_settings())
            return results
    except DataUnavailable as exc:
        return Results(k, error=str(exc))


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
        return html.CSS + html.block(
            html.notice(results.error, "warning", "The results cannot be read right now.")
        )
    if not results:
        return html.CSS + no_data()
    return html.CSS + as_of(results)


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
