"""How a run's end is judged from what papermill raised and the output notebook it left."""

from __future__ import annotations

from nbclient.exceptions import CellTimeoutError

from pipeline_lib.runs.outcome import judge


def _cell(started: bool, status: str = "completed", outputs: list | None = None, count: int = 1) -> dict:
    papermill = {"status": status, "start_time": "2026-12-03T23:45:54Z" if started else None}
    return {
        "cell_type": "code",
        "metadata": {"papermill": papermill},
        "outputs": outputs or [],
        "execution_count": count,
    }


def test_a_timed_out_cell_is_the_one_marked_running() -> None:
    output = {"cells": [_cell(True), _cell(True, "running", count=2), _cell(False, "pending")]}
    status, error = judge(CellTimeoutError("Cell execution timed out"), output)
    assert status == "timed_out" and error is not None and (error.cell_index, error.execution_count) == (1, 2)


def test_a_timed_out_cell_interrupted_by_papermill_is_the_one_with_the_error_output() -> None:
    interrupted = [{"output_type": "error", "ename": "KeyboardInterrupt"}]
    output = {"cells": [_cell(True), _cell(True, outputs=interrupted, count=2), _cell(False, "pending")]}
    _, error = judge(CellTimeoutError("Cell execution timed out"), output)
    assert error is not None and error.cell_index == 1


def test_a_timed_out_cell_in_a_kernel_started_ahead_is_the_last_one_started() -> None:
    # papermill does not shut down a kernel it was given: the cell ends marked completed, no output.
    output = {"cells": [_cell(True), _cell(True, count=2), _cell(True, count=3), _cell(False, "pending")]}
    _, error = judge(CellTimeoutError("Cell execution timed out"), output)
    assert error is not None and (error.cell_index, error.execution_count) == (2, 3)


def test_a_run_that_finished_has_no_error() -> None:
    assert judge(None, {"cells": [_cell(True)]}) == ("succeeded", None)
