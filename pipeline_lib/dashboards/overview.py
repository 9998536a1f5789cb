"""The Overview dashboard: headline numbers, distributions of math score and SES, comparisons by
sector, sex and minority, and the SES-math relation with a fitted line per sector.

`load` reads the documents; each section function returns the section's HTML (empty when there is
nothing at all, a short notice when only its own documents are missing, and where a document is
withheld from public views, the reason in its place).
"""

from __future__ import annotations

import pandas as pd

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.dashboards import page
from pipeline_lib.dashboards.source import Results, load_results
from pipeline_lib.views import frames, html, plots
from pipeline_lib.views.palette import OKABE_ITO
from pipeline_lib.views.style import figure_html
from pipeline_lib.views.tables import table_frame

GROUPINGS = {
    "sector": keys.DESCRIPTIVES_BY_SECTOR,
    "sex": keys.DESCRIPTIVES_BY_SEX,
    "minority": keys.DESCRIPTIVES_BY_MINORITY,
}
OVERALL = keys.DESCRIPTIVES_OVERALL
KEYS = (
    OVERALL,
    *GROUPINGS.values(),
    keys.distribution("math_score"),
    keys.distribution("ses"),
    keys.SES_MATH_RELATION,
    keys.SCHOOL_DISTRIBUTION,
)


def load(client: DbApiClient, k: int) -> Results:
    """The Overview's documents, as the public sees them."""
    return load_results(client, KEYS, k)


def _missing(what: str) -> str:
    return html.notice(f"{what} not computed yet: they appear after the next processing run.", "empty")


def _absent(results: Results, key: str, what: str) -> str:
    """Where the document `key` would show: why it is withheld, else that it is not computed yet."""
    return page.notices(results, (key,)) or _missing(what)


@page.section
def headline(results: Results) -> str:
    """Cards: students, schools, mean math score and mean SES (overall descriptives, else the
    histograms' totals)."""
    if not results:
        return ""
    items = []
    math, ses = (frames.overall_row(results.get(OVERALL), v) for v in ("math_score", "ses"))
    histogram = results.get(keys.distribution("math_score"))
    students = math["n"] if math is not None else (histogram.n_input if histogram else None)
    if students is not None:
        items.append((f"{int(students):,}", "students in the cleaned data"))
    schools = table_frame(results.get(keys.SCHOOL_DISTRIBUTION), needs=("school_id",))
    if schools is not None:
        items.append((f"{len(schools):,}", "schools"))
    if math is not None:
        items.append((f"{math['mean']:.1f}", f"mean math score (sd {math['sd']:.1f})"))
    if ses is not None:
        items.append((f"{ses['mean']:+.2f}", f"mean SES index (sd {ses['sd']:.2f})"))
    withheld = page.notices(results, [OVERALL, keys.distribution("math_score"), keys.SCHOOL_DISTRIBUTION])
    if not items:
        return html.section("Headline numbers", withheld or _missing("Headline numbers"))
    return html.section("Headline numbers", html.cards(items) + withheld)


@page.section
def distribution_plots(results: Results) -> str:
    """Histograms of math score and SES side by side."""
    if not results:
        return ""
    figures = []
    for variable, label, fill in (
        ("math_score", "Mathematics score", OKABE_ITO["blue"]),
        ("ses", "Socio-economic status index (SES)", OKABE_ITO["bluish_green"]),
    ):
        key = keys.distribution(variable)
        bins = frames.histogram(results.get(key))
        if bins is None or bins.empty:
            figures.append(_absent(results, key, f"The distribution of {label.lower()} is"))
            continue
        figure = plots.histogram(bins, x_label=label, k=results.k, fill=fill)
        shown = int(bins.loc[~bins["suppressed"], "n"].sum())
        notes = html.row_notes(bins, "bin", results.k)
        caption = f"{shown:,} students in bins of {bins['upper'].iloc[0] - bins['lower'].iloc[0]:g}." + (
            f" {notes}" if notes else ""
        )
        figures.append(figure_html(figure, f"Histogram of {label.lower()}", caption))
    return html.section("Distributions", html.side_by_side(figures))


@page.section
def comparisons(results: Results) -> str:
    """Math score by sector, sex and minority: boxes from the quartiles, and a table of means."""
    if not results:
        return ""
    summaries = {g: frames.group_summary(results.get(key), g, "math_score") for g, key in GROUPINGS.items()}
    summaries = {g: s for g, s in summaries.items() if s is not None and not s.empty}
    withheld = page.notices(results, list(GROUPINGS.values()))
    if not summaries:
        return html.section(
            "Comparisons by sector, sex and minority", withheld or _missing("Group comparisons are")
        )
    figure = plots.group_boxes(summaries, y_label="Mathematics score", k=results.k)
    parts = [
        figure_html(
            figure,
            "Box plots of math score by sector, by sex and by minority",
            "Boxes span the middle half of scores (first to third quartile); the line is the median, "
            "the diamond the mean. A group without a box has too few students for its quartiles to be shown.",
        )
    ]
    rows = []
    for grouping, summary in summaries.items():
        ses = frames.group_summary(results.get(GROUPINGS[grouping]), grouping, "ses")
        mean_ses = (
            ses.set_index(ses["group"].astype(str))["mean"] if ses is not None else pd.Series(dtype=float)
        )
        for row in summary.itertuples(index=False):
            rows.append(
                {
                    "grouping": grouping,
                    "group": plots.group_label(grouping, row.group),
                    "n": row.n,
                    "mean": row.mean,
                    "sd": row.sd,
                    "median": row.median,
                    "mean_ses": mean_ses.get(str(row.group)),
                    "suppressed": row.suppressed,
                    "note": getattr(row, "note", None),
                }
            )
    parts.append(
        html.table(
            pd.DataFrame(rows),
            columns={
                "grouping": "By",
                "group": "Group",
                "n": "Students",
                "mean": "Mean math",
                "sd": "SD",
                "median": "Median math",
                "mean_ses": "Mean SES",
            },
            formats={
                "n": html.count,
                "mean": html.number(1),
                "sd": html.number(1),
                "median": html.number(1),
                "mean_ses": html.number(2),
            },
            k=results.k,
        )
    )
    return html.section("Comparisons by sector, sex and minority", withheld + "".join(parts))


@page.section
def relation(results: Results) -> str:
    """Mean math score per SES bin and the least-squares line of each sector."""
    if not results:
        return ""
    found = frames.relation_tables(results.get(keys.SES_MATH_RELATION))
    title = "Socio-economic status and math score"
    if found is None or found[1].empty:
        return html.section(title, _absent(results, keys.SES_MATH_RELATION, "The SES-math relation is"))
    every_bin, every_line = found
    binned = every_bin[~every_bin["suppressed"]].reset_index(drop=True)
    lines = every_line[~every_line["suppressed"]].reset_index(drop=True)
    figure = plots.relation(binned, lines)
    notes = " ".join(
        part
        for part in (
            html.row_notes(every_bin, "SES bin", results.k),
            html.row_notes(every_line, "line", results.k),
        )
        if part
    )
    caption = (
        "Dots: mean math score of the students in each half-point SES bin (larger dots, more students); "
        "lines: least-squares fit per sector; dashed: all students." + (f" {notes}" if notes else "")
    )
    table = html.table(
        every_line.assign(sector=every_line["sector"].replace({"all": "all students"})),
        columns={
            "sector": "Sector",
            "n": "Students",
            "slope": "Math points per SES point",
            "slope_se": "SE",
            "intercept": "Math score at SES 0",
            "r": "Correlation r",
        },
        formats={
            "n": html.count,
            "slope": html.number(2),
            "slope_se": html.number(2),
            "intercept": html.number(1),
            "r": html.number(2),
        },
        k=results.k,
    )
    alt = "Mean math score by SES with a fitted line per sector"
    return html.section(title, figure_html(figure, alt, caption) + table)
