"""Notebooks run as `workbench run` runs them show no red blocks of known noise: no Spark start-up
warnings, no plan-truncation warning, no kernel transport warning. What Spark says goes to
`<data dir>/logs/spark.log`, and a failing Spark job still fails its cell with a readable error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.runs.kernel import ensure_kernel
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw

pytestmark = [pytest.mark.slow, pytest.mark.spark]

CLEAN = Path(__file__).resolve().parents[2] / "notebooks" / "clean.ipynb"
NOISE = ("WARNING", "WARN ", "incubator", "SparkStringUtils", "without encryption")

CELLS = [
    "from pipeline_lib.spark.session import get_spark\nspark = get_spark('local[1]')",
    # 60 columns: past Spark's default of 25 fields, whose plan strings were truncated with a warning
    "wide = spark.range(5).selectExpr(*[f'id + {i} as c{i}' for i in range(60)])\n"
    "wide.explain()\nprint(wide.groupBy('c1').count().count())",
    "spark.sql(\"select cast('not a number' as int)\").collect()",
]


def _execute(source: Path, output: Path, **parameters: Any) -> None:
    papermill.execute_notebook(  # as `workbench run` does (pipeline_lib/runs/executor.py)
        str(source),
        str(output),
        parameters=parameters,
        kernel_name=ensure_kernel(),
        kernel_manager_class="pipeline_lib.runs.kernel.LocalKernelManager",
        progress_bar=False,
    )


def _stderr(notebook: Any) -> list[str]:
    return [
        output["text"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("name") == "stderr"
    ]


def test_a_spark_notebook_shows_no_noise_and_a_failing_job_a_readable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "var"))
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(notebook, tmp_path / "spark.ipynb")
    with pytest.raises(papermill.PapermillExecutionError) as failed:
        _execute(tmp_path / "spark.ipynb", tmp_path / "out.ipynb")
    assert failed.value.exec_count == 3 and "CAST_INVALID_INPUT" in failed.value.evalue
    assert "'not a number'" in failed.value.evalue
    done = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [cell for cell in done.cells if cell.cell_type == "code"]  # papermill adds a markdown one
    assert "== Physical Plan ==" in code[1].outputs[0]["text"]
    assert _stderr(done) == []  # no red block at all: neither warnings nor a JSON copy of the error
    terminal = capfd.readouterr().err  # the kernel's and the JVM's stderr were ours before
    assert not any(noise in terminal for noise in NOISE), terminal
    log = (tmp_path / "var" / "logs" / "spark.log").read_text()
    assert "Using incubator modules" in log  # the JVM's stderr, kept where one can read it
    assert "CAST_INVALID_INPUT" in log and "SparkStringUtils" not in log


def test_the_clean_report_has_no_red_blocks(
    notebook_db: tuple[RunningServer, DbApiClient], tmp_path: Path
) -> None:
    _, client = notebook_db
    client.write("schools", SCHOOLS, mode="upsert", key="school_id")
    client.write("raw", dirty_raw(300), key="submission_id")
    output = tmp_path / "clean.ipynb"
    _execute(
        CLEAN, output, db_api_address=client.address, spark_master="local[2]", run_id="quiet", dry_run=False
    )
    stderr = _stderr(nbformat.read(output, as_version=4))
    assert not any(noise in text for text in stderr for noise in NOISE), stderr
    assert stderr == []
