"""The log helpers: structlog is for the processes that configure logging, not for every kernel."""

from __future__ import annotations

import logging

import pytest
import structlog

from pipeline_lib.settings import PROJECT_DIR
from tests.processes import python_output

NOTEBOOK_IMPORTS = """
import sys
from pathlib import Path
from pipeline_lib.runs.kernel_ahead import module_imports, warm_up_code

for notebook in sys.argv[1:]:
    exec(warm_up_code(module_imports(Path(notebook))))  # what a kernel started ahead runs
print("structlog" in sys.modules)
"""


def test_the_pipeline_notebooks_kernels_import_no_structlog() -> None:
    # A run's kernel imports its notebook's modules before its first cell, on the run's path:
    # structlog (0.06 s) came with the log file helpers that the Spark session module uses.
    notebooks = [str(PROJECT_DIR / "notebooks" / name) for name in ("clean.ipynb", "process.ipynb")]
    assert python_output(NOTEBOOK_IMPORTS, *notebooks).strip() == "False"


def test_configured_logging_renders_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline_lib.logs import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        logging.getLogger("workbench.test").info("stored", extra={"records": 3})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()
    assert "records=3" in capsys.readouterr().err
