"""The runs' papermill engine: the output notebook is written as each code cell starts and as the
notebook ends, not as every cell starts and ends; an open output notebook misses nothing for
longer than an instant. Real papermill runs on the workbench kernel."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest
from nbclient.exceptions import DeadKernelError
from papermill import engines
from papermill.exceptions import PapermillExecutionError

from pipeline_lib.runs import papermill_engine
from pipeline_lib.runs.kernel import ensure_kernel

# Run in the kernel as a code cell starts: what the output notebook on disk says then.
LOOK_AT_OUTPUT = """
import json
_cells = json.load(open(output))["cells"]
_seen = [(c["cell_type"], c["metadata"]["papermill"]["status"], len(c.get("outputs", []))) for c in _cells]
print(json.dumps(_seen))
"""


def _notebook(path: Path, cells: list[nbformat.NotebookNode]) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "workbench", "display_name": "workbench", "language": "python"}
    parameters = nbformat.v4.new_code_cell("output = None", metadata={"tags": ["parameters"]})
    notebook.cells = [parameters, *cells]
    nbformat.write(notebook, path)


def _execute(tmp_path: Path, cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """The output notebook of a papermill run of `cells` with the workbench engine."""
    _notebook(tmp_path / "in.ipynb", cells)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(tmp_path / "in.ipynb"),
        str(out),
        parameters={"output": str(out)},
        kernel_name=ensure_kernel(),
        kernel_manager_class="pipeline_lib.runs.kernel.LocalKernelManager",
        progress_bar=False,
        engine_name=papermill_engine.registered(),
    )
    return nbformat.read(out, as_version=4)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the output notebook's writes by the execution manager (each still written)."""
    seen: list[str] = []
    write = engines.write_ipynb

    def counted(nb: nbformat.NotebookNode, path: str) -> None:
        seen.append(path)
        write(nb, path)

    monkeypatch.setattr(engines, "write_ipynb", counted)
    return seen


def test_each_code_cell_starts_with_everything_before_it_on_disk(tmp_path: Path, writes: list[str]) -> None:
    md = nbformat.v4.new_markdown_cell
    code = nbformat.v4.new_code_cell
    cells = [
        md("# Title"),
        code("print('first')"),
        md("Some words"),
        md("More words"),
        code(LOOK_AT_OUTPUT),
        md("The end"),
        code("print('last')"),
    ]
    result = _execute(tmp_path, cells)
    # As the looking cell ran, the file had the cells before it done (the first's output in
    # it, the markdown between marked completed), itself running, the rest pending.
    seen = json.loads(result.cells[6].outputs[0]["text"])
    assert seen == [
        ["code", "completed", 0],  # the parameters
        ["code", "completed", 0],  # and those papermill injected
        ["markdown", "completed", 0],
        ["code", "completed", 1],
        ["markdown", "completed", 0],
        ["markdown", "completed", 0],
        ["code", "running", 0],
        ["markdown", "pending", 0],
        ["code", "pending", 0],
    ]
    # The notebook's start, each of its 5 code cells' starts, the last one's end, the notebook's
    # end (papermill's: 2 + 2 x 9).
    assert len(writes) == 1 + 5 + 1 + 1
    final = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert [c.metadata.papermill["status"] for c in final.cells] == ["completed"] * 9
    assert final.cells[8].outputs[0]["text"] == "last\n"
    assert all(c.metadata.papermill["duration"] is not None for c in final.cells)
    assert final.metadata.papermill["end_time"] is not None


def test_a_failing_cell_is_written_with_its_error(tmp_path: Path, writes: list[str]) -> None:
    cells = [
        nbformat.v4.new_code_cell("print('before')"),
        nbformat.v4.new_code_cell("raise ValueError('bad data')"),
        nbformat.v4.new_markdown_cell("never reached"),
    ]
    with pytest.raises(PapermillExecutionError, match="bad data"):
        _execute(tmp_path, cells)
    # The start, 4 code cells' starts, the failed cell's end (at once: nothing runs after it), the end.
    assert len(writes) == 1 + 4 + 1 + 1
    final = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    ran = [c for c in final.cells if "papermill" in c.metadata]  # papermill adds a banner on top
    assert [c.metadata.papermill["status"] for c in ran][2:4] == ["completed", "failed"]
    assert ran[2].outputs[0]["text"] == "before\n"
    assert any(o.get("ename") == "ValueError" for o in ran[3].outputs)
    assert final.metadata.papermill["exception"] is True


def test_a_kernel_that_dies_leaves_the_notebook_written_to_its_end(tmp_path: Path, writes: list[str]) -> None:
    """papermill writes nothing of its own after a dead kernel: the engine's last write is the file."""
    cells = [
        nbformat.v4.new_code_cell("print('before')"),
        nbformat.v4.new_code_cell("import os\nos._exit(1)"),
        nbformat.v4.new_code_cell("print('never')"),
    ]
    with pytest.raises(DeadKernelError):
        _execute(tmp_path, cells)
    final = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert final.metadata.papermill["end_time"] is not None
    assert final.cells[2].outputs[0]["text"] == "before\n"
    assert final.cells[3].metadata.papermill["end_time"] is not None
    assert writes[-1] == str(tmp_path / "out.ipynb")
