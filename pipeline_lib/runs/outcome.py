"""Judging a papermill run: its exception and output notebook become a status and a `RunError`.

papermill reports a failing cell as `PapermillExecutionError` (and marks the cell in the output),
but a cell timeout as nbclient's `CellTimeoutError` with no mark in the notebook's metadata, and a
dead kernel as `DeadKernelError`; every one of them must end as a failed or timed-out run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillExecutionError

from pipeline_lib.runs.records import RunError, RunStatus


class Interrupted(Exception):
    """The run was asked to stop (SIGTERM, Ctrl-C) before it finished."""


def judge(exc: BaseException | None, output: Mapping[str, Any] | None) -> tuple[RunStatus, RunError | None]:
    """The run's status and error from what papermill raised (None: it finished)."""
    if exc is None:
        return "succeeded", None
    if isinstance(exc, PapermillExecutionError):
        # papermill adds a banner cell above the failing one, so its own index is off by the banners.
        return "failed", RunError(
            cell_index=_error_cell(output, exc.cell_index),
            execution_count=exc.exec_count,
            exception=exc.ename,
            message=exc.evalue,
        )
    cell_index, execution_count = _unfinished_cell(output)
    if isinstance(exc, CellTimeoutError | TimeoutError):
        first_line = (str(exc) or "timed out").splitlines()[0]
        return "timed_out", RunError(
            cell_index=cell_index,
            execution_count=execution_count,
            exception=type(exc).__name__,
            message=f"a cell ran longer than the execution timeout: {first_line}",
        )
    if isinstance(exc, DeadKernelError):
        message = "the notebook's kernel died (killed, or out of memory)"
    elif isinstance(exc, Interrupted | KeyboardInterrupt):
        message = f"the run was stopped before it finished ({exc or 'interrupted'})"
    else:
        message = str(exc) or type(exc).__name__
    return "failed", RunError(
        cell_index=cell_index, execution_count=execution_count, exception=type(exc).__name__, message=message
    )


def _error_cell(output: Mapping[str, Any] | None, fallback: int) -> int:
    """Index, in the output notebook, of the code cell whose output is an error."""
    for index, cell in enumerate((output or {}).get("cells", [])):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", []) or []):
            return index
    return fallback


def _unfinished_cell(output: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    """The cell papermill was executing when the run stopped, if the output notebook says."""
    if not output:
        return None, None
    cells = output.get("cells", [])
    for index, cell in enumerate(cells):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            return index, cell.get("execution_count")
    # A timed-out cell is interrupted and marked completed, with the interruption as its error output
    # when papermill shut the kernel down; in a kernel started ahead, with no output: the last started.
    index = _error_cell(output, -1)
    if index < 0:
        started = [
            i
            for i, cell in enumerate(cells)
            if cell.get("metadata", {}).get("papermill", {}).get("start_time")
        ]
        index = started[-1] if started else -1
    return (index, cells[index].get("execution_count")) if index >= 0 else (None, None)
