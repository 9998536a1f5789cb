"""The All results dashboard: every document in `processed`, grouped by analysis (the part of its
key before ':'), each with its title, summary, chart and tables, as the public may see them.

It knows no key: a document an analysis notebook publishes (`notebooks/analyses/NAME.ipynb`, keys
`NAME:*`) shows here as soon as it is written. Groups come in the process run's order, then the
analysis notebooks' by name, then the documents the other dashboards draw. Each group opens with
how old its figures are; a withheld document says why in its place, a failed one that it has no
result, one held whole since when. A dropdown (`AnalysisFilter`) hides the other groups with a
style rule, so the page, drawn once, shows everything without a kernel and filters with one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.dashboards import catalog, page, source
from pipeline_lib.dashboards.source import Results
from pipeline_lib.process.results import PublicResult, PublicTable
from pipeline_lib.runs.freshness import Freshness
from pipeline_lib.settings import Settings, get_settings
from pipeline_lib.views import charts, html
from pipeline_lib.views.tables import to_frame

LIMIT = 1_000  # documents read: far more than any page lists
TABLE_ROWS = 50  # rows of a table shown; the results page has them all
CHART_BARS = 40  # more bars than this are not a chart anyone reads: the table has them
PROCESS_ORDER = tuple(dict.fromkeys(key.partition(":")[0] for key in keys.ANALYSIS_KEYS))
# The analyses of the documents the other dashboards draw (written by the process run too).
DASHBOARD_ANALYSES = frozenset(
    key.partition(":")[0]
    for key in (keys.REJECT_REASONS, keys.TOP_CHANGES, keys.SES_MATH_RELATION, keys.SCHOOL_DISTRIBUTION)
)
ALL = "All analyses"


@dataclass
class AllResults(Results):
    """Every result found, and the same split by analysis in the order the page shows them."""

    groups: dict[str, Results] = field(default_factory=dict)


def load(client: DbApiClient, k: int, settings: Settings | None = None) -> AllResults:
    """Every document in `processed` as the public sees it, grouped, each group with its freshness
    (judged by the schedule of `settings`, by default the process's)."""
    every = source.load_all(client, k, limit=LIMIT)
    results = AllResults(
        k, every.found, failed=every.failed, withheld=every.withheld, not_updated=every.not_updated
    )
    settings = settings or get_settings()
    # A group's freshness is that of its newest document's run; most groups share a run, so each
    # run's is judged once (a run record and the schedule read per run, not per group).
    judged: dict[tuple[str, object], Freshness | None] = {}
    for analysis in sorted({r.analysis for r in every.found.values()}, key=group_order):
        group = subset(every, [key for key, r in every.found.items() if r.analysis == analysis])
        newest = group.newest()
        run = (newest.run_id, newest.computed_at) if newest is not None else ("", None)
        if run not in judged:
            judged[run] = page.freshness(client, group, settings)
        group.freshness = judged[run]
        results.groups[analysis] = group
    return results


def group_order(analysis: str) -> tuple[int, int, str]:
    """The process run's analyses first (in its order), then the others by name, then those
    of the documents the other dashboards draw."""
    if analysis in PROCESS_ORDER:
        return (0, PROCESS_ORDER.index(analysis), analysis)
    return (2 if analysis in DASHBOARD_ANALYSES else 1, 0, analysis)


def key_order(key: str) -> tuple[int, str]:
    """The process run's keys in its order, others by name."""
    known = keys.ANALYSIS_KEYS
    return (known.index(key), key) if key in known else (len(known), key)


def subset(results: Results, chosen: Iterable[str]) -> Results:
    """The results of the keys `chosen` (in `key_order`), with their notes."""
    picked = sorted(chosen, key=key_order)
    return Results(
        results.k,
        {key: results.found[key] for key in picked},
        failed=results.failed & set(picked),
        withheld={key: results.withheld[key] for key in picked if key in results.withheld},
        not_updated={key: results.not_updated[key] for key in picked if key in results.not_updated},
    )


# -- one document -----------------------------------------------------------------------------------


def figure(value: object) -> str:
    """A cell of a table this page knows nothing about: counts with separators, other numbers to
    three significant digits (one decimal from 100 on), anything else as text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or value.is_integer():
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def _numeric(table: PublicTable) -> list[str]:
    """The columns holding a number in some row (a label column holds text)."""
    return [
        column
        for i, column in enumerate(table.columns)
        if any(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in table.rows)
    ]


def table_html(table: PublicTable, k: int) -> str:
    """The public table under its own column names, hidden cells saying why, at most `TABLE_ROWS`."""
    frame = to_frame(table)
    caption = table.title
    if len(frame) > TABLE_ROWS:
        caption += f": the first {TABLE_ROWS} of {len(frame):,} rows (the results page has them all)"
        frame = frame.head(TABLE_ROWS)
    formats = dict.fromkeys(_numeric(table), figure)
    return html.table(frame, columns={c: c for c in table.columns}, formats=formats, k=k, caption=caption)


def chart_html(result: PublicResult, k: int) -> str:
    """The document's bar chart, if it names one, largest bar on top: hidden rows named, without a
    bar, last; none when its table or columns are missing, nothing is left to draw or it would have
    too many bars. The results page's SVG chart (a PNG from matplotlib took 0.1 s a chart), its
    bars ordered here; an <img> of it, which the snapshots' sanitiser keeps."""
    spec = result.chart
    table = next((t for t in result.tables if spec and t.name == spec.table), None)
    if spec is None or table is None or not {spec.x, spec.y} <= set(table.columns):
        return ""
    frame = to_frame(table)
    values = pd.to_numeric(frame[spec.y], errors="coerce")
    drawn = frame[frame["suppressed"] | values.notna()]
    if drawn["suppressed"].all() or len(drawn) > CHART_BARS:
        return ""
    title = spec.title or table.title
    shown = values[drawn.index].where(~drawn["suppressed"].astype(bool))
    # Largest on top, hidden rows last, ties in the table's order.
    order = shown.fillna(-np.inf).sort_values(ascending=False, kind="stable").index
    svg = charts.bar_chart_svg(
        [str(label) for label in drawn.loc[order, spec.x]],
        [None if pd.isna(value) else float(value) + 0.0 for value in shown[order]],  # + 0.0: no -0
        title,
        missing="hidden",
    )
    alt = f"Bar chart: {title} by {spec.x}"
    return html.image_figure(charts.svg_data_url(svg), alt, html.row_notes(drawn, "bar", k))


def document_html(results: Results, key: str) -> str:
    """One result: its title and key, then why it is withheld, or that it has no result, or (after
    since when, if it is shown as published earlier) its summary, chart and tables."""
    result, k = results.found[key], results.k
    head = f'<h3>{html.esc(result.title)}</h3><p class="wb-meta"><code>{html.esc(key)}</code></p>'
    if key in results.withheld:
        return head + html.withheld(results.withheld[key])
    if key in results.failed:
        reason = result.summary or "The analysis has no result."
        return head + html.notice(reason, "warning", "No result in the last run.")
    body = html.not_updated(results.not_updated[key]) if key in results.not_updated else ""
    if result.n_input is None:
        body += html.notice(f"Fewer than {k} students are behind this result: its figures are hidden.")
    if result.summary:
        body += f"<p>{html.esc(result.summary)}</p>"
    body += chart_html(result, k) + "".join(table_html(table, k) for table in result.tables)
    return head + body


# -- the page ---------------------------------------------------------------------------------------


def groups(results: Results) -> dict[str, Results]:
    """The results by analysis, in order (none when `page.load` could not read them)."""
    return results.groups if isinstance(results, AllResults) else {}


def group_html(group: Results, index: int, analysis: str) -> str:
    """One analysis: how old its figures are, then each of its documents."""
    intro = page.as_of(group)
    if analysis in DASHBOARD_ANALYSES:
        intro += html.block('<p class="wb-meta">Figures the other dashboards draw.</p>')
    body = "".join(html.block(document_html(group, key)) for key in group.found)
    return f'<div class="wb-group wb-group-{index}">{html.section(analysis, intro + body)}</div>'


def every_result(results: Results) -> str:
    """Every group, in order ("" on a page without results: the opening says why)."""
    found = groups(results)
    if not found:
        return ""
    shown = "".join(group_html(group, i, analysis) for i, (analysis, group) in enumerate(found.items()))
    return f'<div class="wb-all-results">{shown}</div>'


def only(index: int | None) -> str:
    """A style rule that hides every group but the `index`th ("" for None: show all)."""
    if index is None:
        return ""
    return f"<style>.wb-all-results .wb-group:not(.wb-group-{index}) {{ display: none; }}</style>"


class AnalysisFilter:
    """A dropdown of the analyses: choosing one hides the others on the page, by a style rule in an
    HTML widget (the results are drawn once, as static HTML, so they show without a kernel)."""

    def __init__(self, analyses: list[str]) -> None:
        import ipywidgets as w

        options = [(f"{ALL} ({len(analyses)})", None), *((a, i) for i, a in enumerate(analyses))]
        self.analysis = w.Dropdown(options=options, value=None, description="Show")
        self.rule = w.HTML(value="")
        self.analysis.observe(lambda _change: self.render(), names="value")
        self.widget = w.VBox([self.analysis, self.rule])

    def render(self) -> None:
        self.rule.value = only(self.analysis.value)


def show_filter(results: Results) -> AnalysisFilter | None:
    """Display the dropdown when there is more than one analysis to choose from, and return it (not
    in a snapshot, which shows every analysis)."""
    from IPython.display import display

    if len(groups(results)) < 2 or catalog.is_snapshot():
        return None
    chooser = AnalysisFilter(list(groups(results)))
    display(chooser.widget)
    return chooser
