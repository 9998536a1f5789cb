"""The Schools dashboard: a per-school table and a caterpillar plot of the school effects of the
multilevel model, with widgets to filter by sector, search a school and pick the effect shown.

`SchoolsExplorer` holds the widgets; `render` draws for the current choices, so a test can set a
widget's value and read the new plot without a browser. A document withheld from public views is
named with its reason above the explorer (`withheld`), and in the plot's place when it is the
school effects; one shown as published earlier is named there with since when.
"""

from __future__ import annotations

import pandas as pd

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.fields import SECTORS
from pipeline_lib.dashboards import catalog, page
from pipeline_lib.dashboards.source import Results, load_results
from pipeline_lib.views import frames, html, plots
from pipeline_lib.views.style import figure_html

KEYS = (keys.SCHOOL_DISTRIBUTION, keys.DESCRIPTIVES_BY_SCHOOL, keys.MIXEDLM_SCHOOL_EFFECTS)
TABLE_ROWS = 25  # rows of the table at a time; the search finds the others
EFFECTS_SHOWN = {
    "intercept": ("School effect on math score", "School effect on math (points)"),
    "slope": ("School difference in SES slope", "SES slope difference (points)"),
}
ALL_SECTORS = "all sectors"


def load(client: DbApiClient, k: int) -> Results:
    """The Schools dashboard's documents, as the public sees them."""
    return load_results(client, KEYS, k)


def school_table(results: Results) -> pd.DataFrame | None:
    """One row per school (`frames.school_table`), None when no school is known yet."""
    return frames.school_table(
        results.get(keys.SCHOOL_DISTRIBUTION),
        results.get(keys.DESCRIPTIVES_BY_SCHOOL),
        results.get(keys.MIXEDLM_SCHOOL_EFFECTS),
    )


class SchoolsExplorer:
    """Sector filter, school search and effect choice over a caterpillar plot and a table."""

    def __init__(self, schools: pd.DataFrame, k: int, effects_withheld: str | None = None) -> None:
        import ipywidgets as w

        self.schools, self.k, self.effects_withheld = schools, k, effects_withheld
        present = [s for s in SECTORS if s in set(schools["sector"])]
        self.sector = w.Dropdown(options=[ALL_SECTORS, *present], value=ALL_SECTORS, description="Sector")
        self.search = w.Text(
            value="", placeholder="school code or name", description="Find school", continuous_update=False
        )
        self.effect = w.ToggleButtons(
            options=[(EFFECTS_SHOWN[e][0], e) for e in EFFECTS_SHOWN],
            value="intercept",
            description="Show",
            style={"button_width": "auto"},
        )
        self.plot, self.table = w.Output(), w.Output()
        for control in (self.sector, self.search, self.effect):
            control.observe(lambda _change: self.render(), names="value")
        self.widget = w.VBox([w.HBox([self.sector, self.search]), self.effect, self.plot, self.table])
        self.render()

    def choices(self) -> tuple[str | None, str, str]:
        """(sector or None for all, search text, effect) as the widgets stand."""
        sector = None if self.sector.value == ALL_SECTORS else self.sector.value
        return sector, self.search.value, self.effect.value

    def render(self) -> None:
        """Draw for the current choices. The outputs are set, not captured with `display`, so
        this works the same in a kernel, in Voilà and in a test."""
        self.plot_html, self.table_html = explore(
            self.schools, *self.choices(), k=self.k, effects_withheld=self.effects_withheld
        )
        for output, content in ((self.plot, self.plot_html), (self.table, self.table_html)):
            output.outputs = (
                {"output_type": "display_data", "data": {"text/html": content}, "metadata": {}},
            )


def explore(
    schools: pd.DataFrame,
    sector: str | None,
    search: str,
    effect: str,
    *,
    k: int,
    effects_withheld: str | None = None,
) -> tuple[str, str]:
    """(caterpillar plot, table) HTML for the chosen sector, search and effect; in the plot's
    place, why the school effects are withheld when they are."""
    chosen, matches = frames.filter_schools(schools, sector, search)
    where = f"{sector} schools" if sector else "schools (all sectors)"
    ranked = frames.effects_ranked(chosen.assign(match=matches), effect)
    if effects_withheld:
        plot = html.withheld(effects_withheld, "School effects:")
    elif ranked.empty:
        plot = html.notice(
            f"No school effects to show for {where}: the multilevel model has not run yet, or every "
            f"school has fewer than {k} students.",
            "empty",
        )
    else:
        title, y_label = EFFECTS_SHOWN[effect]
        hits = ranked["match"].astype(bool)
        caption = (
            f"{len(ranked):,} {where}; dots are predicted effects (positive: above the "
            f"average school), bars their 95% intervals."
        )
        if search.strip():
            caption += f" {int(hits.sum())} match \u201c{search.strip()}\u201d (highlighted)."
        figure = plots.caterpillar(ranked, effect=effect, matches=hits, y_label=y_label)
        plot = figure_html(figure, f"Caterpillar plot: {title.lower()}, {where}", caption)
    return plot, _table(chosen, matches, search, effect, k)


def _table(chosen: pd.DataFrame, matches: pd.Series, search: str, effect: str, k: int) -> str:
    if search.strip():
        rows = chosen[matches.to_numpy(dtype=bool)]
        intro = f"{len(rows):,} school(s) match \u201c{search.strip()}\u201d."
        if rows.empty:
            return html.notice(intro + " Try part of the code or of the name.", "empty")
    else:
        order = pd.to_numeric(chosen[effect], errors="coerce")
        rows = chosen.assign(__order=order).sort_values("__order", ascending=False, na_position="last")
        first = min(TABLE_ROWS, len(chosen))
        intro = f"{len(chosen):,} schools; the {first} with the highest {effect} effect first."
    shown = rows.head(TABLE_ROWS)
    table = html.table(
        shown,
        columns={
            "school_id": "Code",
            "name": "School",
            "sector": "Sector",
            "n": "Students",
            "mean_math": "Mean math",
            "mean_ses": "Mean SES",
            "intercept": "Effect on math",
            "intercept_se": "SE",
            "slope": "SES slope difference",
            "slope_se": "SE",
        },
        formats={
            "n": html.count,
            "mean_math": html.number(1),
            "mean_ses": html.number(2),
            "intercept": html.number(2),
            "intercept_se": html.number(2),
            "slope": html.number(2),
            "slope_se": html.number(2),
        },
        k=k,
    )
    return f'<div class="wb-dash"><p>{html.esc(intro)}</p>{table}</div>'


def explorer(results: Results) -> SchoolsExplorer | None:
    """The explorer over the loaded results, or None when no school is known yet."""
    schools = school_table(results)
    if schools is None or schools.empty:
        return None
    return SchoolsExplorer(schools, results.k, results.withheld.get(keys.MIXEDLM_SCHOOL_EFFECTS))


def withheld(results: Results) -> str:
    """A line for each of the page's documents withheld from public views, with why, or shown as
    published earlier, with since when ("" if none)."""
    notices = page.notices(results, KEYS)
    return html.block(notices) if notices else ""


def static_explorer(schools: pd.DataFrame, k: int, effects_withheld: str | None = None) -> str:
    """What a snapshot shows in the explorer's place: every sector, each effect's plot, and the
    table of schools with the highest effect on math, with a line saying where the filters are."""
    parts = [
        html.block(
            '<p class="wb-meta">All sectors. The live dashboard (for analysts) filters by sector, finds a '
            "school and switches the effect shown.</p>"
        )
    ]
    for index, effect in enumerate(EFFECTS_SHOWN):
        plot, table = explore(schools, None, "", effect, k=k, effects_withheld=effects_withheld)
        parts.append(html.block(f"<h3>{html.esc(EFFECTS_SHOWN[effect][0])}</h3>") + plot)
        if index == 0:
            parts.append(table)
        if effects_withheld:
            break  # the one notice says why for both effects
    return "".join(parts)


def show_explorer(results: Results) -> SchoolsExplorer | None:
    """Display the explorer (or say why there is none; in a snapshot, its static equivalent) and
    return it (None without widgets)."""
    from IPython.display import HTML, display

    if not results:
        return None
    schools, notices = school_table(results), withheld(results)
    if schools is None or schools.empty:
        empty = html.block(html.notice("No schools yet: they appear after the next processing run.", "empty"))
        display(HTML(notices or empty))
        return None
    display(HTML(html.block("<h2>School effects</h2>") + notices))
    effects_withheld = results.withheld.get(keys.MIXEDLM_SCHOOL_EFFECTS)
    if catalog.is_snapshot():
        display(HTML(static_explorer(schools, results.k, effects_withheld)))
        return None
    found = SchoolsExplorer(schools, results.k, effects_withheld)
    display(found.widget)
    return found
