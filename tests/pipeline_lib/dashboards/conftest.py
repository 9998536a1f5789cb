"""Dashboard fixtures: a populated snapshot (built once per session with the real cleaning,
processing and distribution functions), a fresh db-api per test, and the environment a dashboard
kernel reads its settings from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.runs.kernel import ensure_kernel
from tests.conftest import TOKEN
from tests.pipeline_lib.dashboards import populate

DASHBOARDS = Path(__file__).resolve().parents[3] / "notebooks" / "dashboards"
NAMES = ("overview", "schools", "models", "data_quality", "all_results")


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> populate.Snapshot:
    return populate.build_snapshot(tmp_path_factory.mktemp("snapshot"))


@pytest.fixture
def kernel_env(sqlite_client: DbApiClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DbApiClient:
    """The test's db-api in the environment the notebook kernels inherit."""
    monkeypatch.setenv("WORKBENCH_DB_API_ADDRESS", sqlite_client.address)
    monkeypatch.setenv("WORKBENCH_DB_API_TOKEN", TOKEN)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WORKBENCH_K_MIN_GROUP", "5")
    monkeypatch.delenv("VOILA_PREHEAT", raising=False)
    return sqlite_client


@pytest.fixture
def populated(kernel_env: DbApiClient, snapshot: populate.Snapshot) -> Iterator[DbApiClient]:
    populate.write(kernel_env, snapshot)
    yield kernel_env


def execute(name: str) -> nbformat.NotebookNode:
    """Run a dashboard notebook headlessly with the project kernel; a failing cell raises."""
    notebook = nbformat.read(DASHBOARDS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        notebook, kernel_name=ensure_kernel(), timeout=120, resources={"metadata": {"path": str(DASHBOARDS)}}
    )
    client.execute()
    return notebook


def html_outputs(notebook: nbformat.NotebookNode) -> str:
    """Every HTML output of the executed notebook, in order."""
    return "\n".join(
        output["data"]["text/html"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "text/html" in output.get("data", {})
    )


def errors(notebook: nbformat.NotebookNode) -> list[str]:
    """Every error and stderr output of an executed notebook, one line each."""
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for cell in notebook.cells
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error" or o.get("name") == "stderr"
    ]
