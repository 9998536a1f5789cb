"""papermill's nbclient engine, writing the output notebook once per code cell instead of twice per cell.

papermill writes the whole output notebook (copied, validated, serialised) as every cell starts
and again as it ends, markdown cells included: 58 writes for the process notebook, up to 12 ms
each once its figures are in it, all between its cells, on the run's path. Here the notebook is
written as each code cell starts (everything before it, and that it runs) and as the notebook
ends (also after an error or a stop). The writes left out held nothing an open output notebook
misses for more than an instant: a cell's end is written with the next code cell's start, and a
markdown cell runs nothing. papermill's autosave of a long cell's outputs is unchanged.
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
        self._writes = False
        try:
            super().cell_complete(cell, cell_index, **kwargs)
        finally:
            self._writes = True


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


papermill_engines.register(ENGINE_NAME, WorkbenchEngine)
