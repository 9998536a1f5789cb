"""papermill's nbclient engine, writing the output notebook once per code cell instead of twice per cell.

papermill writes the whole output notebook (copied, validated, serialised) as every cell starts
and again as it ends, markdown cells included: 58 writes for the process notebook, up to 12 ms
each once its figures are in it, all between its cells, on the run's path. Here it is written as
each code cell starts (everything before it, and that it runs), as a cell that failed or the last
code cell ends, and as the notebook ends (also after a stop or the kernel's death). The writes
left out are those whose state the next code cell's start writes a moment later; a markdown cell
runs nothing. papermill's autosave of a long cell's outputs is unchanged.

This replaces papermill's `Engine.execute_notebook` (papermill 2.x, pinned below 3): it relies on
the execution manager writing through its `save`.
"""

from __future__ import annotations

from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

ENGINE_NAME = "workbench"


class _WritesAtCodeCells(NotebookExecutionManager):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writes = True

    def save(self, **kwargs: Any) -> None:
        if self._writes:
            super().save(**kwargs)

    def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        self._writes = cell.get("cell_type") == "code"
        try:
            super().cell_start(cell, cell_index, **kwargs)
        finally:
            self._writes = True

    def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        # Written now only when nothing follows soon: after a failure papermill stops, and after
        # the last code cell it asks the kernel for its language and may shut it down first.
        failed = cell.metadata.papermill.get("status") == self.FAILED
        self._writes = failed or self._last_code_cell(cell_index)
        try:
            super().cell_complete(cell, cell_index, **kwargs)
        finally:
            self._writes = True

    def _last_code_cell(self, index: int | None) -> bool:
        return index is not None and all(c.get("cell_type") != "code" for c in self.nb.cells[index + 1 :])


class WorkbenchEngine(NBClientEngine):
    """papermill's `Engine.execute_notebook`, with the execution manager above."""

    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        **kwargs: Any,
    ) -> Any:
        nb_man = _WritesAtCodeCells(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


def registered() -> str:
    """The engine's name for `papermill.execute_notebook(engine_name=...)`, registered with papermill."""
    papermill_engines.register(ENGINE_NAME, WorkbenchEngine)
    return ENGINE_NAME
