"""The Data quality dashboard: the latest run of each job, cleaned vs quarantined records over the
clean runs, why records are quarantined and what the cleaner changes most.

Run records come from `runs`; reasons and changes from the `quality:*` documents in `processed`
(one withheld from public views says why in its place).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.dashboards import page
from pipeline_lib.dashboards.source import Results, load_results, load_runs
from pipeline_lib.runs.records import RunRecord
from pipeline_lib.views import frames, html, plots
from pipeline_lib.views.palette import OKABE_ITO
from pipeline_lib.views.style import figure_html
from pipeline_lib.views.tables import table_frame

KEYS = (keys.REJECT_REASONS, keys.TOP_CHANGES)
STATUS_WORDS = {
    "succeeded": "succeeded",
    "failed": "FAILED",
    "timed_out": "TIMED OUT",
    "skipped": "skipped",
    "running": "running now",
}


@dataclass
class Quality(Results):
    """The quality documents and the run records."""

    runs: list[RunRecord] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.found) or bool(self.runs)


def load(client: DbApiClient, k: int) -> Quality:
    """The quality documents (as the public sees them) and the newest run records."""
    results = load_results(client, KEYS, k)
    return Quality(
        k,
        results.found,
        failed=results.failed,
        withheld=results.withheld,
        not_updated=results.not_updated,
        runs=load_runs(client),
    )


@page.section
def latest_status(data: Quality) -> str:
    """Each job's latest run, with a warning when one did not succeed (figures may be stale)."""
    if not data:
        return ""
    latest = frames.latest_runs(data.runs)
    if latest.empty:
        return html.section("Latest runs", html.notice("No run has been recorded yet.", "empty"))
    failed = latest[latest["status"].isin(["failed", "timed_out"])]
    banner = ""
    if len(failed):
        names = ", ".join(failed["notebook"])
        banner = html.notice(
            f"The latest run of {names} did not succeed; the figures may be out of date.",
            "warning",
            "Attention:",
        )
    shown = latest.assign(
        status=latest["status"].map(STATUS_WORDS).fillna(latest["status"]),
        started_at=latest["started_at"].map(_when),
        ended_at=latest["ended_at"].map(lambda t: _when(t) if t is not None and not pd.isna(t) else None),
    )
    table = html.table(
        shown,
        columns={
            "notebook": "Job",
            "status": "Status",
            "started_at": "Started (UTC)",
            "ended_at": "Ended (UTC)",
            "duration_seconds": "Seconds",
            "problem": "Problem",
        },
        formats={"duration_seconds": html.number(1)},
    )
    return html.section("Latest runs", banner + table)


def _when(stamp: object) -> str:
    return f"{pd.Timestamp(stamp):%Y-%m-%d %H:%M}"


@page.section
def cleaned_vs_quarantined(data: Quality) -> str:
    """Totals now (from the quality documents) and the records of each clean run."""
    if not data:
        return ""
    reasons, changes = data.get(keys.REJECT_REASONS), data.get(keys.TOP_CHANGES)
    parts = [page.notices(data, KEYS)]
    if (
        reasons is not None
        and changes is not None
        and reasons.n_input is not None
        and changes.n_input is not None
    ):
        total = reasons.n_input + changes.n_input
        share = reasons.n_input / total if total else 0.0
        parts.append(
            html.cards(
                [
                    (f"{changes.n_input:,}", "records cleaned"),
                    (f"{reasons.n_input:,}", "records in quarantine"),
                    (f"{share:.1%}", "of records quarantined"),
                ]
            )
        )
    history = frames.clean_history(data.runs)
    if history.empty:
        parts.append(html.notice("No clean run has read records yet.", "empty"))
    else:
        figure = plots.run_history(history.tail(40))
        runs = len(history)
        caption = f"The last {min(runs, 40)} of {runs} clean runs that read records."
        parts.append(
            figure_html(figure, "Stacked bars of cleaned and quarantined records per clean run", caption)
        )
    return html.section("Cleaned and quarantined", "".join(parts))


def _counts_section(
    data: Quality,
    key: str,
    needs: tuple[str, ...],
    *,
    title: str,
    nothing: str,
    labels: Callable[[pd.DataFrame], pd.Series],
    x_label: str,
    fill: str,
    alt: str,
    caption: str = "",
) -> str:
    """A bar per row of the document's records-by-label table; a notice when the document is not
    there yet or is withheld, and `nothing` when its table is empty; above the bars, since when
    when it is shown as published earlier."""
    if not data:
        return ""
    if key in data.withheld:
        return html.section(title, html.withheld(data.withheld[key]))
    frame = table_frame(data.get(key), needs=needs)
    if frame is None:
        return html.section(
            title, html.notice("Not summarised yet: it appears after the next processing run.", "empty")
        )
    if frame.empty:
        return html.section(title, html.notice(nothing, "info"))
    figure = plots.bars(
        labels(frame), frame["records"], x_label=x_label, hidden=frame["suppressed"], k=data.k, fill=fill
    )
    notes = html.row_notes(frame, "row", data.k)
    held = html.not_updated(data.not_updated[key]) if key in data.not_updated else ""
    return html.section(title, held + figure_html(figure, alt, " ".join(c for c in (caption, notes) if c)))


@page.section
def reject_reasons(data: Quality) -> str:
    """Quarantined records by reason, in words where the document has them."""
    return _counts_section(
        data,
        keys.REJECT_REASONS,
        ("reason", "records"),
        title="Why records are quarantined",
        nothing="No record is in quarantine.",
        labels=lambda frame: frame["text"] if "text" in frame else frame["reason"],
        x_label="Quarantined records",
        fill=OKABE_ITO["vermillion"],
        alt="Bar chart of quarantined records by reason",
        caption="A record can fail several rules; it counts once under each.",
    )


@page.section
def top_changes(data: Quality) -> str:
    """The cleaner's most frequent changes, by field and rule."""
    return _counts_section(
        data,
        keys.TOP_CHANGES,
        ("field", "rule", "records"),
        title="What the cleaner changes most",
        nothing="The cleaner changed nothing: every value arrived as expected.",
        labels=lambda frame: frame["field"] + ": " + frame["rule"].str.replace("_", " "),
        x_label="Cleaned records changed",
        fill=OKABE_ITO["blue"],
        alt="Bar chart of the most frequent changes by field and rule",
    )
