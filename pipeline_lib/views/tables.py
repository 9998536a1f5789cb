"""Result tables as DataFrames: the one place a `ResultTable` (a stored document, as the process
notebook shows it) or a `PublicTable` (a public view, groups under k suppressed) becomes a frame.

A public table's frame carries a `suppressed` column (True for hidden rows) and, when the view says
why rows are hidden or not updated, a `note` column; a stored table's frame holds its columns
only. Tables are found by name when given, else by the columns they must have, so a renamed
table in a document still shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pipeline_lib.process.results import PublicResult, PublicTable, ResultDocument, ResultTable

Table = ResultTable | PublicTable
Result = ResultDocument | PublicResult


def to_frame(table: Table) -> pd.DataFrame:
    """The table's rows under its columns; a public table's with `suppressed` (and `note`)."""
    frame = pd.DataFrame(table.rows, columns=table.columns)
    if isinstance(table, PublicTable):
        frame["suppressed"] = table.suppressed
        if any(table.notes):
            frame["note"] = table.notes
    return frame


def find_table(result: Result | None, name: str | None = None, *, needs: Sequence[str] = ()) -> Table | None:
    """The table called `name`, else the first with all of `needs`; None if there is none."""
    if result is None:
        return None
    tables: list[Table] = list(result.tables)
    return next(
        (t for t in tables if (name is None or t.name == name) and set(needs) <= set(t.columns)), None
    )


def table_frame(
    result: Result | None, name: str | None = None, *, needs: Sequence[str] = ()
) -> pd.DataFrame | None:
    """`find_table` as a frame; None if the result or such a table is not there."""
    table = find_table(result, name, needs=needs)
    return None if table is None else to_frame(table)


def required_frame(result: Result, name: str) -> pd.DataFrame:
    """The table called `name` as a frame; KeyError naming the tables there are if it is missing."""
    frame = table_frame(result, name)
    if frame is None:
        raise KeyError(f"{result.key} has no table {name!r}; it has {[t.name for t in result.tables]}")
    return frame
