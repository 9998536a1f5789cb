"""Small result documents for the views' tests: a stored document of given tables, its public view
(groups under `K` suppressed) and a table of a DataFrame."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pipeline_lib.process.results import PublicResult, ResultDocument, ResultTable, suppress

WHEN = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
K = 5


def stored(key: str, *tables: ResultTable, n_input: int = 1000) -> ResultDocument:
    return ResultDocument(
        key=key,
        title=key,
        analysis=key.split(":")[0],
        run_id="r",
        computed_at=WHEN,
        n_input=n_input,
        tables=list(tables),
    )


def public(key: str, *tables: ResultTable, n_input: int = 1000) -> PublicResult:
    return suppress(stored(key, *tables, n_input=n_input), K)


def result_table(
    name: str, frame: pd.DataFrame, labels: list[str], size: str | None = "n", **fields: object
) -> ResultTable:
    return ResultTable(
        name=name,
        title=name,
        columns=list(frame.columns),
        rows=frame.values.tolist(),
        label_columns=labels,
        group_size_column=size,
        **fields,
    )
