"""The All results dashboard shows every document in `processed`, the ones no other dashboard knows
included, grouped by analysis and exactly as public readers may see them: a group under k without
its figures, a withheld document as "Withheld: ..." without its figures, a failed analysis without a
result. The library against a real db-api, and the notebook run headlessly."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import PROCESSED
from pipeline_lib.dashboards import all_results
from pipeline_lib.process.results import WITHHELD_NOTE, ChartSpec, ResultDocument, ResultTable
from pipeline_lib.settings import Settings
from tests.pipeline_lib.dashboards import populate
from tests.pipeline_lib.dashboards.conftest import DASHBOARDS, errors, execute, html_outputs
from tests.pipeline_lib.views.sample_results import AUDIT_DETAIL, K, stored, withhold

WITHHELD = WITHHELD_NOTE[:1].upper() + WITHHELD_NOTE[1:]  # as the results page words it
READING = "reading:by_sector"
SMALL_MEAN = 77.77  # the mean of the catholic group: 3 students, under k


def _reading() -> ResultDocument:
    """What an analysis notebook `reading` publishes: one table of groups, one under k, and a chart."""
    table = ResultTable(
        name="table",
        title="Reading score by sector",
        columns=["sector", "n", "mean_reading"],
        rows=[["public", 40, 61.23], ["catholic", 3, SMALL_MEAN], ["private", 25, 55.41]],
        label_columns=["sector"],
    )
    return stored(READING, table, n_input=68).model_copy(
        update={
            "title": "Reading score by sector",
            "summary": "Students in public schools read best.",
            "chart": ChartSpec(table="table", x="sector", y="mean_reading", title="Mean reading score"),
        }
    )


def _statistics(key: str, mean: float) -> ResultTable:
    return ResultTable(
        name="statistics", title=f"Statistics of {key}", columns=["variable", "n", "mean"],
        rows=[["math_score", 120, mean]], label_columns=["variable"],
    )  # fmt: skip


def _documents() -> list[ResultDocument]:
    """A process document, a withheld one and a failed one, the custom one and a dashboard's one."""
    overall = stored(keys.DESCRIPTIVES_OVERALL, _statistics("overall", 52.46)).model_copy(
        update={"title": "Descriptive statistics of all students", "summary": "Math scores average 52.5."}
    )
    ols = stored(keys.OLS, _statistics("ols", 48.91)).model_copy(update={"title": "OLS of math score"})
    failed = stored(keys.MIXEDLM_NULL).model_copy(
        update={"title": "Null model", "status": "failed", "summary": "Too few schools for the model."}
    )
    ses = stored(keys.distribution("ses"), _statistics("ses", 0.12)).model_copy(update={"title": "SES bins"})
    return [ses, _reading(), withhold(ols), failed, overall]


def _store(client: DbApiClient, docs: list[ResultDocument]) -> None:
    for doc in docs:
        client.put_document(PROCESSED, doc.key, doc.model_dump(mode="json"))


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def page_html(sqlite_client: DbApiClient, tmp_path: Path) -> str:
    _store(sqlite_client, _documents())
    results = all_results.load(sqlite_client, K, Settings(data_dir=tmp_path / "var"))  # type: ignore[call-arg]
    return all_results.every_result(results)


def _group(html: str, analysis: str) -> str:
    """The part of the page that shows `analysis`."""
    return next(part for part in html.split('<div class="wb-group ') if f"<h2>{analysis}</h2>" in part)


def test_a_document_no_other_dashboard_knows_shows_with_its_small_group_hidden(page_html: str) -> None:
    reading = _group(page_html, "reading")
    text = _text(reading)
    # A group is hidden, so the summary (written from the computed figures) is left out.
    assert "Reading score by sector" in text and "Students in public schools read best." not in text
    assert "summary is left out" in text
    assert "public 40 61.2" in text and "private 25 55.4" in text
    assert f"catholic hidden (fewer than {K}) hidden (fewer than {K})" in text
    assert "77.8" not in text and str(SMALL_MEAN) not in reading
    assert reading.count('<figure class="wb-plot"><img alt="Bar chart: Mean reading score by sector"') == 1
    assert "1 bar hidden, fewer than 5 students." in text
    # The chart, an SVG image: largest bar on top, the hidden group last, named, without its value.
    chart = _svg_images(reading)[0]
    assert "Mean reading score" in chart and "77.8" not in chart
    labels = re.findall(r'text-anchor="end">([^<]*)</text>', chart)
    assert labels == ["public", "private", "catholic"]
    assert ">61.2</text>" in chart and 'font-style="italic">hidden</text>' in chart


def _svg_images(html: str) -> list[str]:
    """The SVG images inlined in `html`, decoded."""
    found = re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)
    return [base64.b64decode(data).decode() for data in found]


def test_process_documents_show_with_their_run_line(page_html: str) -> None:
    group = _group(page_html, "descriptives")
    text = _text(group)
    assert "Descriptive statistics of all students" in text and "Math scores average 52.5." in text
    assert "math_score 120 52.5" in text
    assert "by run <code>r</code>. Groups of fewer than 5 students are hidden." in group


def test_a_withheld_document_says_so_without_its_figures(page_html: str) -> None:
    ols = _group(page_html, "ols")
    assert "OLS of math score" in ols and WITHHELD in ols
    assert "48.9" not in ols and "<table" not in ols
    assert AUDIT_DETAIL not in page_html  # the audit's detail names a hidden cell: analysts only


def test_a_failed_analysis_says_it_has_no_result(page_html: str) -> None:
    text = _text(_group(page_html, "mixedlm"))
    assert "No result in the last run. Too few schools for the model." in text


def test_groups_come_process_first_then_analysis_notebooks_then_dashboard_figures(page_html: str) -> None:
    order = re.findall(r"<h2>([^<]+)</h2>", page_html)
    assert order == ["descriptives", "ols", "mixedlm", "reading", "distribution"]
    assert "Figures the other dashboards draw." in _group(page_html, "distribution")


def test_the_filter_hides_every_other_analysis(sqlite_client: DbApiClient, tmp_path: Path) -> None:
    _store(sqlite_client, _documents())
    results = all_results.load(sqlite_client, K, Settings(data_dir=tmp_path / "var"))  # type: ignore[call-arg]
    chooser = all_results.AnalysisFilter(list(results.groups))
    assert chooser.rule.value == ""  # everything shows until one is chosen
    chooser.analysis.value = list(results.groups).index("reading")
    assert chooser.rule.value == (
        "<style>.wb-all-results .wb-group:not(.wb-group-3) { display: none; }</style>"
    )
    assert 'class="wb-group wb-group-3"><div class="wb-dash"><h2>reading</h2>' in all_results.every_result(
        results
    )
    chooser.analysis.value = None
    assert chooser.rule.value == ""


def test_the_notebook_reads_data_only_after_waiting_for_a_viewer() -> None:
    code = [
        c.source
        for c in nbformat.read(DASHBOARDS / "all_results.ipynb", as_version=4).cells
        if c.cell_type == "code"
    ]
    assert "page.prepare()" in code[0] and "page.wait_for_viewer()" in code[1]
    assert not any(".load" in source for source in code[:1])
    assert "page.load(" in code[1] and "page.show(page.opening(" in code[1]


@pytest.mark.slow
def test_the_notebook_on_an_empty_system_says_no_data_yet(kernel_env: DbApiClient) -> None:
    notebook = execute("all_results")
    html = html_outputs(notebook)
    assert not errors(notebook)
    assert "No data yet." in html and "wb-group" not in html


@pytest.mark.slow
def test_the_notebook_shows_every_document_as_the_public_sees_it_without_interaction(
    kernel_env: DbApiClient,
) -> None:
    _store(kernel_env, _documents())
    notebook = execute("all_results")
    html = html_outputs(notebook)
    assert not errors(notebook)
    text = _text(_group(html, "reading"))  # shown as drawn, before anyone touches the filter
    assert "summary is left out" in text and "77.8" not in text
    assert "Descriptive statistics of all students" in html and WITHHELD in _group(html, "ols")
    widgets = [o for c in notebook.cells for o in c.get("outputs", []) if "widget" in str(o.get("data", {}))]
    assert len(widgets) == 1  # the filter


@pytest.mark.slow
@pytest.mark.spark
def test_the_notebook_on_a_populated_system_shows_the_process_run_beside_a_new_analysis(
    populated: DbApiClient,
) -> None:
    _store(populated, [_reading()])
    notebook = execute("all_results")
    html = html_outputs(notebook)
    assert not errors(notebook)
    for key in keys.ANALYSIS_KEYS:
        assert f"<code>{key}</code>" in html, key
    assert f"run <code>{populate.PROCESS_RUN}</code>" in html
    assert "77.8" not in _text(_group(html, "reading"))
