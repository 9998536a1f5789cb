"""What every dashboard notebook does around its sections: get ready before anyone asks (Voilà's
preheated kernels run this part in advance), wait for a viewer, then show HTML.

The data is read after `wait_for_viewer`, so a preheated page shows the results as they are when
it is opened, not as they were when its kernel was started.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pipeline_lib.dashboards import html
from pipeline_lib.dashboards.source import DataUnavailable, Results, connect
from pipeline_lib.dashboards.style import warm_up
from pipeline_lib.db_client import DbApiClient
from pipeline_lib.settings import get_settings

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
    """What `loader` reads with a fresh client, or empty `Results` saying why it could not."""
    k = k_min_group()
    try:
        with connect() as client:
            return loader(client, k)
    except DataUnavailable as exc:
        return Results(k, error=str(exc))


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
    newest = results.newest()
    if newest is None:
        return ""
    return html.block(
        f'<p class="wb-meta">Figures from run <code>{html.esc(newest.run_id)}</code>, computed '
        f"{newest.computed_at:%Y-%m-%d %H:%M} UTC. Groups of fewer than {results.k} students are hidden.</p>"
    )


def no_data(what: str = "No data yet") -> str:
    return html.block(html.notice(NO_DATA, "empty", f"{what}."))
