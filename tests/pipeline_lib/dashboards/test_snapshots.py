"""Dashboard snapshots: every dashboard executed in one kernel against a real db-api, kept in
`dashboards` and archived as pages; each shows what the live dashboard shows, without widgets; a
dashboard that fails keeps its previous snapshot."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import DASHBOARDS
from pipeline_lib.dashboards import snapshot as snapshots
from pipeline_lib.settings import Settings
from tests.conftest import TOKEN
from tests.pipeline_lib.dashboards import populate
from tests.pipeline_lib.dashboards.conftest import DASHBOARDS as DASHBOARD_DIR
from tests.pipeline_lib.dashboards.conftest import NAMES, execute
from tests.processes import python_output

WIDGET = "application/vnd.jupyter.widget-view+json"
PLOT = '<figure class="wb-plot"><img alt="'
# Plots in each snapshot: as live, but Schools draws both effects' caterpillar plots statically.
PLOTS = {"overview": 4, "schools": 2, "models": 4, "data_quality": 3, "all_results": 13}


def _settings(client: DbApiClient, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "var",
        "db_api_address": client.address,
        "db_api_token": TOKEN,
        "k_min_group": 5,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def test_the_page_is_the_markdown_and_the_html_outputs_without_sources_or_printed_text() -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# School *effects*\n\nHow schools differ."),
        nbformat.v4.new_code_cell("secret_source = 1"),
        nbformat.v4.new_code_cell("show()"),
    ]
    notebook.cells[2].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="a warning\n"),
        nbformat.v4.new_output(
            "display_data", data={"text/html": "<p>3,000 students</p>", "text/plain": "x"}
        ),
        nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "1"}, "text/plain": "VBox()"}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
    ]
    body = snapshots.body_of(notebook)
    assert "<h1>School <em>effects</em></h1>" in body and "How schools differ." in body
    assert "<p>3,000 students</p>" in body
    assert "secret_source" not in body and "a warning" not in body and "VBox" not in body and "42" not in body
    assert snapshots.title_of(notebook, "schools") == "School *effects*"
    assert snapshots.title_of(nbformat.v4.new_notebook(), "data_quality") == "Data quality"


@pytest.mark.slow
@pytest.mark.spark
def test_every_dashboard_snapshot_shows_what_the_live_dashboard_shows(
    populated: DbApiClient, tmp_path: Path
) -> None:
    rendered = snapshots.refresh(
        _settings(populated, tmp_path), populated, run_id=populate.PROCESS_RUN, folder=tmp_path / "archive"
    )
    assert [(s.name, s.error) for s in rendered] == [(name, None) for name in sorted(NAMES)]
    for one in rendered:
        stored = populated.get_document(DASHBOARDS, one.name)
        assert stored is not None and stored["html"] == one.body and stored["run_id"] == populate.PROCESS_RUN
        assert stored["title"] == one.title
        page = (tmp_path / "archive" / f"{one.name}.html").read_text()
        assert one.body in page and "<title>" in page
        assert one.body.count(PLOT) == PLOTS[one.name], one.name
        assert WIDGET not in one.body and "No data yet" not in one.body
    by_name = {s.name: s for s in rendered}
    assert by_name["overview"].title == "Overview" and by_name["data_quality"].title == "Data quality"
    # The same figures as the live dashboard: every output after the opening line (whose "computed
    # N minutes ago" moves with the clock) appears in the snapshot as it does live.
    for name in ("overview", "models", "data_quality"):
        live = execute(name)
        outputs = [
            o["data"]["text/html"]
            for cell in live.cells[3:]
            for o in cell.get("outputs", [])
            if "text/html" in o.get("data", {})
        ]
        assert outputs and all(output in by_name[name].body for output in outputs), name
    schools = by_name["schools"].body
    assert "All sectors." in schools and "School effect on math score" in schools
    assert "School difference in SES slope" in schools
    assert len(re.findall(r"<tr", schools)) > 10  # the table of schools


@pytest.mark.slow
def test_a_dashboard_that_fails_keeps_its_previous_snapshot(kernel_env: DbApiClient, tmp_path: Path) -> None:
    folder = tmp_path / "notebooks" / "dashboards"
    folder.mkdir(parents=True)
    shutil.copy(DASHBOARD_DIR / "overview.ipynb", folder)
    broken = nbformat.v4.new_notebook()
    broken.cells = [
        nbformat.v4.new_markdown_cell("# Broken"),
        nbformat.v4.new_code_cell("raise ValueError('bad')"),
    ]
    nbformat.write(broken, folder / "broken.ipynb")
    nbformat.write(broken, folder / "Not-Served.ipynb")  # no name the web app serves: left out
    kernel_env.put_document(DASHBOARDS, "broken", {"title": "Broken", "html": "<p>before</p>"})
    settings = _settings(kernel_env, tmp_path, notebooks_dir=tmp_path / "notebooks")
    rendered = snapshots.refresh(settings, kernel_env, run_id="process-1", folder=None)
    assert [(s.name, s.error) for s in rendered] == [("broken", "ValueError: bad"), ("overview", None)]
    assert kernel_env.get_document(DASHBOARDS, "broken")["html"] == "<p>before</p>"
    assert "No data yet." in kernel_env.get_document(DASHBOARDS, "overview")["html"]


ARCHIVED_IN_A_NEW_PROCESS = """
import datetime as dt, json, sys
from pathlib import Path
from pipeline_lib.dashboards import snapshot

page = snapshot.Snapshot("overview", "Overview", dt.datetime.now(dt.UTC), 0.5, "r1", body="<p>figures</p>")
(written,) = snapshot.archive(Path(sys.argv[1]), [page])
print(json.dumps({"pandas": "pandas" in sys.modules, "page": written.read_text()}))
"""


def test_archiving_snapshots_imports_no_pandas(tmp_path: Path) -> None:
    """`workbench run` archives the pages after its last notebook, on the way to its exit: it
    needs the style sheet only, not the dashboards' HTML helpers (pandas, a third of a second)."""
    import json

    outcome = json.loads(python_output(ARCHIVED_IN_A_NEW_PROCESS, str(tmp_path)))
    assert not outcome["pandas"]
    assert ".wb-dash {" in outcome["page"] and "<p>figures</p>" in outcome["page"]


def test_a_snapshot_that_began_earlier_does_not_replace_a_later_one(sqlite_client: DbApiClient) -> None:
    """A scheduled clean's render and a process run's run beside each other: the one that read the
    older results, finishing last, replaced the newer figures until the next run."""
    import datetime as dt

    began = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    newer = snapshots.Snapshot(
        "overview", "Overview", began + dt.timedelta(seconds=3), 1.0, "process-r", "new"
    )
    older = snapshots.Snapshot("overview", "Overview", began, 4.0, "clean-r", "old")
    snapshots.store(sqlite_client, [newer])
    snapshots.store(sqlite_client, [older])
    kept = sqlite_client.get_document(DASHBOARDS, "overview")
    assert kept is not None and (kept["html"], kept["run_id"]) == ("new", "process-r")
    later = snapshots.Snapshot(
        "overview", "Overview", began + dt.timedelta(seconds=9), 1.0, "clean-s", "later"
    )
    snapshots.store(sqlite_client, [later])
    kept = sqlite_client.get_document(DASHBOARDS, "overview")
    assert kept is not None and kept["html"] == "later"


def test_a_kept_snapshot_from_a_clock_far_ahead_does_not_bar_every_later_one(
    sqlite_client: DbApiClient,
) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    ahead = snapshots.Snapshot("overview", "Overview", now + dt.timedelta(hours=2), 1.0, "elsewhere", "ahead")
    snapshots.store(sqlite_client, [ahead])
    snapshots.store(sqlite_client, [snapshots.Snapshot("overview", "Overview", now, 1.0, "here", "now")])
    kept = sqlite_client.get_document(DASHBOARDS, "overview")
    assert kept is not None and kept["html"] == "now"
