"""Result documents in `processed`, and the k-minimum rule for showing them.

The processing step writes one `ResultDocument` per analysis and scope; the web app and the
dashboards read them. Public views never show a group of fewer than k students: `suppress`
blanks such rows (keeping their labels) and says so, whoever asks.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field


class ChartSpec(BaseModel):
    """A bar chart of one table: labels from column `x`, bar heights from column `y`."""

    table: str
    x: str
    y: str
    title: str = ""


class ResultTable(BaseModel):
    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    # Column holding each row's number of students; None if rows are not groups of students.
    group_size_column: str | None = "n"
    # Columns that name the group (kept visible when the row is suppressed).
    label_columns: list[str] = Field(default_factory=list)
    audience: Literal["public", "analyst"] = "public"
    # Columns left out of public views whatever the group size: a minimum or maximum is one
    # student's own value.
    analyst_columns: list[str] = Field(default_factory=list)


class ResultDocument(BaseModel):
    key: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")
    title: str
    analysis: str
    scope: str = "overall"
    run_id: str
    computed_at: dt.datetime
    n_input: int = Field(ge=0)
    summary: str = ""
    tables: list[ResultTable] = Field(default_factory=list)
    chart: ChartSpec | None = None
    # Written by the processing step; optional, so documents from before still validate.
    input_high_water_mark: int | None = Field(
        None, ge=0, description="the input's high-water mark when read: every record committed up to it is in"
    )
    status: Literal["ok", "failed"] = "ok"
    error: str | None = Field(None, description="why a failed analysis has no result")
    engine: str | None = Field(None, description="what computed it: spark, statsmodels, scikit-learn, ...")
    sample_size: int | None = Field(
        None, ge=0, description="rows of the stratified sample used; None when all of the input was used"
    )
    parameters: dict[str, Any] = Field(default_factory=dict, description="settings the result depends on")
    warnings: list[str] = Field(default_factory=list, description="what the fitting reported")


@dataclass(frozen=True)
class RunStamp:
    """The run that computed a document, and when: what every document in `processed` carries."""

    run_id: str
    computed_at: dt.datetime


def stamped_document(key: str, stamp: RunStamp, *, scope: str | None = None, **fields: Any) -> ResultDocument:
    """The document of `key` (`<analysis>:<scope>`) stamped with its run; `scope` when the document
    names its scope otherwise than the key does. Every builder of result documents goes through here."""
    analysis, _, key_scope = key.partition(":")
    return ResultDocument(
        key=key,
        analysis=analysis,
        scope=key_scope if scope is None else scope,
        run_id=stamp.run_id,
        computed_at=stamp.computed_at,
        **fields,
    )


class PublicTable(BaseModel):
    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    suppressed: list[bool] = Field(description="per row: true if its group is smaller than k")


class ResultSummary(BaseModel):
    """What the result index lists of each result."""

    key: str
    title: str
    analysis: str
    scope: str
    run_id: str
    computed_at: dt.datetime


class PublicResult(ResultSummary):
    status: Literal["ok", "failed"] = "ok"
    error: str | None = Field(None, description="why a failed analysis has no result")
    n_input: int | None = Field(description="null when fewer than k students are behind the result")
    k_min_group: int
    summary: str
    tables: list[PublicTable]
    chart: ChartSpec | None = None


def _small(value: Any, k: int) -> bool:
    """A group size below k; a missing or unreadable size counts as small (fail closed)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return True
    return value < k


def suppress(doc: ResultDocument, k: int, *, analyst: bool = False) -> PublicResult:
    """The document as anyone may see it: rows of groups under k students blanked but labelled,
    analyst-only tables left out unless `analyst`, and nothing at all if the whole input is small."""
    whole_small = doc.n_input < k
    tables = []
    for table in doc.tables:
        if table.audience == "analyst" and not analyst:
            continue
        shown = [i for i, c in enumerate(table.columns) if analyst or c not in table.analyst_columns]
        size_index = table.columns.index(table.group_size_column) if table.group_size_column else None
        keep = {table.columns.index(c) for c in table.label_columns if c in table.columns}
        rows, flags = [], []
        for row in table.rows:
            small = whole_small or (size_index is not None and _small(row[size_index], k))
            rows.append([row[i] if (not small or i in keep) else None for i in shown])
            flags.append(small)
        tables.append(
            PublicTable(
                name=table.name,
                title=table.title,
                columns=[table.columns[i] for i in shown],
                rows=rows,
                suppressed=flags,
            )
        )
    return PublicResult(
        key=doc.key,
        title=doc.title,
        analysis=doc.analysis,
        scope=doc.scope,
        run_id=doc.run_id,
        computed_at=doc.computed_at,
        status=doc.status,
        error=doc.error,
        n_input=None if whole_small else doc.n_input,
        k_min_group=k,
        summary="" if whole_small else doc.summary,
        tables=tables,
        chart=doc.chart,
    )
