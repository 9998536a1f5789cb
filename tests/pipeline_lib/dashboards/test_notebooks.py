"""Each dashboard notebook runs headlessly with the project kernel against a real db-api: on a
populated system it shows its plots and numbers that agree with the data, on an empty one it
says "no data yet", and without the db-api it says the results cannot be read."""

from __future__ import annotations

import re
from collections.abc import Iterator

import nbformat
import pandas as pd
import pytest

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import PROCESSED
from pipeline_lib.dashboards import overview, page
from pipeline_lib.settings import get_settings
from tests.pipeline_lib.dashboards import populate
from tests.pipeline_lib.dashboards.conftest import DASHBOARDS, NAMES, errors, execute, html_outputs
from tests.wire_servers import free_port

# Plots each populated dashboard draws as images (the Schools plot is inside its widget).
PLOTS = {"overview": 4, "schools": 0, "models": 4, "data_quality": 3, "all_results": 13}
WIDGET = "application/vnd.jupyter.widget-view+json"


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("name", NAMES)
def test_a_dashboard_on_an_empty_system_says_no_data_yet(name: str, kernel_env: DbApiClient) -> None:
    notebook = execute(name)
    html = html_outputs(notebook)
    assert not errors(notebook)
    assert "No data yet." in html and "workbench run all" in html
    assert "data:image/png" not in html


def test_a_dashboard_without_the_db_api_says_the_results_cannot_be_read(
    kernel_env: DbApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_DB_API_ADDRESS", f"127.0.0.1:{free_port()}")
    notebook = execute("overview")
    assert not errors(notebook)
    assert "The results cannot be read right now." in html_outputs(notebook)


def test_dashboards_show_data_read_after_waiting_for_a_viewer() -> None:
    """Preheated kernels run the cells before `wait_for_viewer` in advance: they may import, warm
    up and read ahead (`page.read_ahead`), but the page shows what is read after the wait, given
    what was read ahead only to reuse its drawings when the data is the same."""
    for name in NAMES:
        code = [
            c.source
            for c in nbformat.read(DASHBOARDS / f"{name}.ipynb", as_version=4).cells
            if c.cell_type == "code"
        ]
        waiting = next(i for i, source in enumerate(code) if "page.wait_for_viewer()" in source)
        assert waiting == 1 and "page.prepare()" in code[0]
        assert not any(".load" in source for source in code[:waiting]), name
        assert code[waiting].index("wait_for_viewer") < code[waiting].index(".load")
        if "page.read_ahead(" in code[0]:
            assert ".load, ahead)" in code[waiting], name


@pytest.fixture
def settings_from_environment() -> Iterator[None]:
    """Settings read in this process, from the test's environment (and forgotten after)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_page_read_ahead_is_shown_as_drawn_until_its_data_changes(
    populated: DbApiClient, settings_from_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipeline_lib.dashboards.page._drawn", {})
    assert page.read_ahead(overview) is None  # one kernel per viewer: nothing read twice
    monkeypatch.setenv("VOILA_PREHEAT", "True")
    ahead = page.read_ahead(overview)
    assert ahead is not None and ahead.found
    drawn = {draw.__name__: draw(ahead) for draw in page.sections(overview)}
    assert set(drawn) == {"headline", "distribution_plots", "comparisons", "relation"}
    # The viewer arrives; the data is the same: the page is what was drawn ahead, not drawn again.
    results = page.load(overview.load, ahead)
    assert results is ahead and results.freshness is not None
    assert all(getattr(overview, name)(results) is html for name, html in drawn.items())
    # A run replaced a document in between: the viewer gets the new data, drawn for them.
    populated.delete_ids(PROCESSED, [keys.SES_MATH_RELATION])
    results = page.load(overview.load, ahead)
    assert results is not ahead and keys.SES_MATH_RELATION not in results.found
    assert overview.relation(results) != drawn["relation"]
    assert "not computed yet" in overview.relation(results)
    assert overview.headline(results) == drawn["headline"]  # the same figures, drawn again


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("name", NAMES)
def test_a_dashboard_on_a_populated_system_shows_its_plots(name: str, populated: DbApiClient) -> None:
    notebook = execute(name)
    html = html_outputs(notebook)
    assert not errors(notebook)
    assert "No data yet" not in html and "not computed yet" not in html
    assert html.count('<figure class="wb-plot"><img alt="') == PLOTS[name]
    assert f"run <code>{populate.PROCESS_RUN}</code>" in html
    if name == "schools":
        assert any(WIDGET in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", []))


def _analysed(snapshot: populate.Snapshot) -> pd.DataFrame:
    """The students the processing step analyses, computed here directly: the latest record of
    each identified student (ties broken by submission id), every unidentified record."""
    cleaned = snapshot.cleaned.sort_values("submission_id")
    identified = cleaned[cleaned["student_ref"].notna()]
    latest = identified.drop_duplicates(["school_id", "student_ref"], keep="last")
    return pd.concat([cleaned[cleaned["student_ref"].isna()], latest])


@pytest.mark.slow
@pytest.mark.spark
def test_the_overview_headline_agrees_with_a_direct_computation(
    populated: DbApiClient, snapshot: populate.Snapshot
) -> None:
    text = _text(html_outputs(execute("overview")))
    students = _analysed(snapshot)
    assert f"{len(students):,} students in the cleaned data" in text
    assert (
        f"{students['math_score'].mean():.1f} mean math score (sd {students['math_score'].std():.1f})" in text
    )
    assert f"{snapshot.population.schools.shape[0]:,} schools" in text
    public = students.merge(snapshot.population.schools, on="school_id").query("sector == 'public'")
    assert re.search(rf"sector public {len(public):,} {public['math_score'].mean():.1f} ", text)


@pytest.mark.slow
@pytest.mark.spark
def test_the_data_quality_totals_agree_with_the_collections(
    populated: DbApiClient, snapshot: populate.Snapshot
) -> None:
    text = _text(html_outputs(execute("data_quality")))
    cleaned, quarantined = len(snapshot.cleaned), len(snapshot.quarantine)
    assert f"{cleaned:,} records cleaned" in text and f"{quarantined:,} records in quarantine" in text
    assert f"{quarantined / (cleaned + quarantined):.1%} of records quarantined" in text
    assert "process FAILED" not in text  # the failed run is not the latest process run
    assert "The last 4 of 4 clean runs" in text


@pytest.mark.slow
@pytest.mark.spark
def test_groups_under_k_are_hidden_on_the_dashboards(
    populated: DbApiClient, snapshot: populate.Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _analysed(snapshot).query("sex == 'other'")
    k = len(other) + 1  # the smallest sex group is now under k
    monkeypatch.setenv("WORKBENCH_K_MIN_GROUP", str(k))
    text = _text(html_outputs(execute("overview")))
    assert f"sex other hidden (fewer than {k}) hidden (fewer than {k})" in text
    assert f"{other['math_score'].mean():.1f}" not in text.split("sex other", 1)[1].split("sex ", 1)[0]
    models = _text(html_outputs(execute("models")))
    assert f"Sex: other (vs female) hidden (fewer than {k})" in models
