"""The notebooks as an analyst runs them in `workbench lab`: every cell top to bottom with the
defaults, by nbclient (no papermill, nothing injected), against a live db-api that the settings
name. The clean notebook then commits nothing; `workbench run clean` still does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys
from pipeline_lib.process.results import ResultDocument
from pipeline_lib.runs.notebook_counts import counts_from_notebook
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw
from tests.notebooks.test_process_notebook import DASHBOARD_KEYS, N_SCHOOLS, raw_submissions
from tests.pipeline_lib.dashboards.conftest import NAMES as DASHBOARDS
from tests.pipeline_lib.dashboards.conftest import execute as execute_dashboard
from tests.pipeline_lib.dashboards.conftest import html_outputs
from tests.pipeline_lib.process.analysis import simulated

pytestmark = [pytest.mark.slow, pytest.mark.spark]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture
def db(notebook_db: tuple[RunningServer, DbApiClient], monkeypatch: pytest.MonkeyPatch) -> DbApiClient:
    """The db-api and Spark as the settings name them (what `workbench lab` gives its kernels)."""
    client = notebook_db[1]
    monkeypatch.setenv("WORKBENCH_DB_API_ADDRESS", client.address)
    monkeypatch.setenv("WORKBENCH_SPARK_MASTER", "local[2]")
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS_DIR", str(NOTEBOOKS))
    for name in ("WORKBENCH_RUN_FENCE", "VOILA_PREHEAT"):
        monkeypatch.delenv(name, raising=False)
    return client


def _run_by_hand(name: str) -> nbformat.NotebookNode:
    """Every cell in order with the notebook's own kernel (python3: this venv's interpreter), in
    the notebook's folder, as "Run All" in JupyterLab; a failing cell raises."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return notebook


def _shown(notebook: nbformat.NotebookNode) -> str:
    """What the outputs show: text, Markdown and HTML."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
            data = output.get("data", {})
            parts += [output.get("text", ""), data.get("text/markdown", ""), data.get("text/html", "")]
    return "\n".join(parts)


def _workbench_run_clean() -> subprocess.CompletedProcess:
    """`workbench run clean` as cron runs it: no `-p`, the settings in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline_lib.cli", "run", "clean", "--triggered-by", "cron"],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_clean_notebook_run_by_hand_reports_and_commits_nothing(db: DbApiClient) -> None:
    db.write("schools", SCHOOLS, mode="upsert", key="school_id")
    raw = dirty_raw(300)
    db.write("raw", raw, key="submission_id")
    notebook = _run_by_hand("clean.ipynb")
    assert db.count("raw") == len(raw)
    assert db.count("cleaned") == 0 and db.count("quarantine") == 0
    assert db.count("runs") == 0  # only `workbench run` records runs
    shown = _shown(notebook)
    assert "(dry run: nothing committed)" in shown and "0 raw records removed" in shown
    assert "school_unknown" in shown and "decimal_comma" in shown  # rejects and changes
    counts = counts_from_notebook(notebook)
    assert counts["records_in"] == len(raw) and counts["cleaned"] > 0 and counts["raw_deleted"] == 0


def test_workbench_run_clean_commits_and_records_dry_run_false(db: DbApiClient) -> None:
    db.write("schools", SCHOOLS, mode="upsert", key="school_id")
    raw = dirty_raw(300)
    db.write("raw", raw, key="submission_id")
    done = _workbench_run_clean()
    assert done.returncode == 0, done.stdout + done.stderr
    assert db.count("raw") == 0 and db.count("cleaned") > 0 and db.count("quarantine") > 0
    (record,) = db.list_documents("runs", limit=10)
    assert record["status"] == "succeeded" and record["parameters"] == {"dry_run": False}
    assert record["counts"]["raw_deleted"] == len(raw)


def test_the_process_notebook_run_by_hand_stores_and_reports_and_the_dashboards_show_it(
    db: DbApiClient, tmp_path: Path
) -> None:
    db.write("schools", simulated.schools(N_SCHOOLS, seed=17), mode="upsert", key="school_id")
    db.write("raw", raw_submissions(1_500, seed=5), key="submission_id")
    cleaning = _workbench_run_clean()
    assert cleaning.returncode == 0 and db.count("raw") == 0, cleaning.stdout + cleaning.stderr

    notebook = _run_by_hand("process.ipynb")
    stored = {d["_id"]: ResultDocument.model_validate(d) for d in db.list_documents("processed", limit=100)}
    assert set(stored) == set(result_keys.ANALYSIS_KEYS) | set(DASHBOARD_KEYS)
    run_ids = {doc.run_id for doc in stored.values()}
    assert len(run_ids) == 1 and run_ids.pop().startswith("process-")  # the notebook's own run id
    for key in result_keys.ANALYSIS_KEYS:
        assert stored[key].status == "ok", (key, stored[key].error)
    shown = _shown(notebook)
    assert "The audit passed" in shown or "The audit failed for" in shown
    for key in result_keys.ANALYSIS_KEYS:
        assert stored[key].summary.replace("'", "&#x27;")[:60] in shown or stored[key].summary[:60] in shown
    images = [
        o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) == len(result_keys.ANALYSIS_KEYS)
    counts = counts_from_notebook(notebook)
    assert counts["results_written"] == len(stored) and counts["results_failed"] == 0

    # The dashboards, run top to bottom as in `workbench lab`, show what it stored.
    for name in DASHBOARDS:
        dashboard = execute_dashboard(name)
        _shown(dashboard)
        html = html_outputs(dashboard)
        assert "No data yet" not in html and "cannot be read" not in html, name

    # A new analysis notebook, straight from the template, runs top to bottom with its defaults too.
    from pipeline_lib.cli.new import PLACEHOLDER, TEMPLATE

    folder = tmp_path / "analyses"
    folder.mkdir()
    (folder / "by_hand.ipynb").write_text(TEMPLATE.read_text().replace(PLACEHOLDER, "by_hand"))
    analysis = nbformat.read(folder / "by_hand.ipynb", as_version=4)
    NotebookClient(
        analysis, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(folder)}}
    ).execute()
    published = ResultDocument.model_validate(db.get_document("processed", "by_hand:math_by_group"))
    assert published.status == "ok" and published.run_id.startswith("by_hand-")
    assert published.protection is not None and not published.protection.withheld
    assert "Math score by sector" in _shown(analysis)
