"""Tiny notebooks for run tests: each does one thing a real notebook can do (succeed, fail, hang)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat import NotebookNode

OK = (
    "from pipeline_lib.runs.notebook_counts import report_counts\n"
    "report_counts({'records_in': n * 10, 'cleaned': n})"
)

FENCED = (
    "from pipeline_lib.client.sync import DbApiClient\n"
    "with DbApiClient.from_settings() as client:\n"
    "    client.put_document('processed', 'fenced', {'run_id': run_id, 'fence': str(client.fence)})"
)


def _write(path: Path, cells: list[str | NotebookNode], parameters: str = "run_id = None\nn = 1") -> None:
    """A notebook: the parameters cell, then `cells` (code, or a cell made with its own tags)."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    notebook.cells += [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    nbformat.write(notebook, path)


def write_notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "ok.ipynb", [OK])
    _write(folder / "empty.ipynb", [], parameters="run_id = None")
    _write(folder / "fails.ipynb", ["x = 1", "raise ValueError('bad data in the second cell')"])
    _write(folder / "hangs.ipynb", ["import time\ntime.sleep(600)"])
    # Writes what a run's own client attaches to its writes: the fence of the run's lease.
    _write(folder / "fenced.ipynb", [FENCED])
    _write(
        folder / "needs.ipynb",
        ["if source is None:\n    raise ValueError('the parameter source is required: -p source PATH')"],
        parameters="run_id = None\nsource = None",
    )
    # `all` runs these two in order.
    _write(folder / "clean.ipynb", [OK])
    _write(folder / "process.ipynb", [OK])
    return folder
