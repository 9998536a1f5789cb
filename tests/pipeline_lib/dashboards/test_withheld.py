"""The dashboards say why: a document the disclosure audit withholds from public views reads
"Withheld: ..." (the results page's words) where its figures would be, in each dashboard's page
builder, never the audit's analyst-only detail; rows hidden or held carry their notes in the
dashboards' tables and captions.

Documents of the real builders (descriptives and distributions of a second release after one late
student, protected by the real disclosure control; models fitted by the real analyses), stored in a
real db-api and read as the pages read them (`load`)."""

from __future__ import annotations

import re

import pytest

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import PROCESSED
from pipeline_lib.dashboards import overview, quality, schools, statistical_models
from pipeline_lib.process import quality_documents
from pipeline_lib.process.analysis import descriptive_results
from pipeline_lib.process.results import (
    COMPLEMENTARY_NOTE,
    WITHHELD_NOTE,
    ResultDocument,
    held_note,
    suppress,
)
from tests.pipeline_lib.process.analysis import simulated
from tests.pipeline_lib.views.sample_results import (
    AUDIT_DETAIL,
    FIRST,
    SECOND,
    K,
    protected_documents,
    withhold,
)

WITHHELD = WITHHELD_NOTE[:1].upper() + WITHHELD_NOTE[1:]  # as web_app/templates/results.html shows it
HELD = held_note(K, FIRST)


@pytest.fixture(scope="module")
def documents() -> dict[str, ResultDocument]:
    """Every document the Overview, Schools and Models pages read."""
    students = simulated.students(800, 16, seed=2)
    stamp = descriptive_results.Stamp(
        run_id="run-2", computed_at=SECOND, n_input=800, input_high_water_mark=800, k_min_group=K, seed=1
    )
    models = simulated.model_documents(students, stamp, folds=4, seed=1)
    return {d.key: d for d in [*protected_documents(), *models]}


def _store(client: DbApiClient, docs: dict[str, ResultDocument], withheld: set[str]) -> None:
    """The documents as a process run stores them, those of `withheld` withheld by the audit."""
    assert withheld <= set(docs) | {keys.REJECT_REASONS, keys.TOP_CHANGES}
    quality_docs = quality_documents.quality_documents(client, run_id="run-2", computed_at=SECOND)
    for doc in [*docs.values(), *quality_docs]:
        stored = withhold(doc) if doc.key in withheld else doc
        client.put_document(PROCESSED, doc.key, stored.model_dump(mode="json"))


def _says_withheld(html: str, times: int = 1) -> bool:
    assert AUDIT_DETAIL not in html  # the audit's detail names a hidden cell: analysts only
    return html.count(WITHHELD) == times


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_overview_shows_why_each_withheld_document_is_missing(
    sqlite_client: DbApiClient, documents: dict[str, ResultDocument]
) -> None:
    _store(sqlite_client, documents, set(overview.KEYS))
    results = overview.load(sqlite_client, K)
    assert set(results.withheld) == set(overview.KEYS)
    headline, plots = overview.headline(results), overview.distribution_plots(results)
    comparisons, relation = overview.comparisons(results), overview.relation(results)
    assert _says_withheld(headline, 3) and _says_withheld(plots, 2)
    assert _says_withheld(comparisons, 3) and _says_withheld(relation)
    for html in (headline, plots, comparisons, relation):
        assert "not computed yet" not in html and "data:image/png" not in html
    title = documents[keys.DESCRIPTIVES_BY_SEX].title
    assert f"<strong>{title}:</strong> {WITHHELD}" in comparisons


def test_the_overview_names_the_withheld_grouping_beside_the_others(
    sqlite_client: DbApiClient, documents: dict[str, ResultDocument]
) -> None:
    _store(sqlite_client, documents, {keys.DESCRIPTIVES_BY_SEX, keys.distribution("math_score")})
    results = overview.load(sqlite_client, K)
    comparisons, plots = overview.comparisons(results), overview.distribution_plots(results)
    assert _says_withheld(comparisons) and "data:image/png" in comparisons
    text = _text(comparisons)
    assert "sector public" in text and "sex female" not in text
    assert _says_withheld(plots) and plots.count("data:image/png") == 1  # SES still drawn


def test_the_models_page_shows_why_a_withheld_model_is_missing(
    sqlite_client: DbApiClient, documents: dict[str, ResultDocument]
) -> None:
    _store(sqlite_client, documents, {keys.OLS, keys.AT_RISK})
    results = statistical_models.load(sqlite_client, K)
    assert _says_withheld(statistical_models.ols_section(results))
    assert _says_withheld(statistical_models.at_risk_section(results))
    shown = statistical_models.multilevel_section(results) + statistical_models.prediction_section(results)
    assert _says_withheld(shown, 0) and "Not computed yet" not in shown


def test_the_schools_page_shows_why_the_school_effects_are_missing(
    sqlite_client: DbApiClient, documents: dict[str, ResultDocument]
) -> None:
    _store(sqlite_client, documents, {keys.MIXEDLM_SCHOOL_EFFECTS})
    results = schools.load(sqlite_client, K)
    assert _says_withheld(schools.withheld(results))
    explorer = schools.explorer(results)
    assert explorer is not None
    assert _says_withheld(explorer.plot_html) and "School effects:" in explorer.plot_html
    assert "multilevel model has not run yet" not in explorer.plot_html
    assert "Alder" not in explorer.table_html and "S0005" in explorer.table_html  # the table stays


def test_the_schools_page_with_every_document_withheld_says_so_instead_of_no_schools(
    sqlite_client: DbApiClient, documents: dict[str, ResultDocument]
) -> None:
    _store(sqlite_client, documents, set(schools.KEYS))
    results = schools.load(sqlite_client, K)
    assert schools.explorer(results) is None
    assert _says_withheld(schools.withheld(results), len(schools.KEYS))


def test_the_data_quality_page_shows_why_a_withheld_summary_is_missing(
    sqlite_client: DbApiClient, documents: dict[str, ResultDocument]
) -> None:
    _store(sqlite_client, documents, {keys.REJECT_REASONS})
    data = quality.load(sqlite_client, K)
    assert set(data.withheld) == {keys.REJECT_REASONS}
    reasons = quality.reject_reasons(data)
    assert _says_withheld(reasons) and "Not summarised yet" not in reasons
    assert _says_withheld(quality.cleaned_vs_quarantined(data))
    assert _says_withheld(quality.top_changes(data), 0)


def _math_notes(doc: ResultDocument) -> set[str]:
    """The notes of the public view's math-score rows (what the Overview compares)."""
    table = suppress(doc, K).tables[0]
    variable = table.columns.index("variable")
    return {n for row, n in zip(table.rows, table.notes, strict=True) if n and row[variable] == "math_score"}


def test_hidden_and_held_rows_say_why_in_the_dashboards_tables_and_captions(
    sqlite_client: DbApiClient, documents: dict[str, ResultDocument]
) -> None:
    _store(sqlite_client, documents, set())
    results = overview.load(sqlite_client, K)
    comparisons = overview.comparisons(results)
    notes = set().union(*(_math_notes(documents[key]) for key in overview.GROUPINGS.values()))
    assert HELD in notes  # the late student's groups show their first figures
    assert '<th class="wb-text">Why</th>' in comparisons
    for note in notes:
        assert f'<td class="wb-note">{note}</td>' in comparisons, note
    assert HELD in overview.distribution_plots(results)  # a held bin, named in the caption
    assert HELD in overview.relation(results)  # held lines, in the lines' table
    explorer = schools.explorer(schools.load(sqlite_client, K))
    assert explorer is not None
    sizes = suppress(documents[keys.SCHOOL_DISTRIBUTION], K).tables[0]
    assert COMPLEMENTARY_NOTE in sizes.notes
    explorer.search.value = "S000"  # every school of the population: the first ten codes
    assert '<th class="wb-text">Why</th>' in explorer.table_html
    for school, note in zip(sizes.rows, sizes.notes, strict=True):
        if note:
            assert re.search(rf">{school[0]}<.*?wb-note\">{re.escape(note)}", explorer.table_html), school
