"""Result documents in `processed`, and the rules for showing them.

The processing step writes one `ResultDocument` per analysis and scope; the web app and the
dashboards read them. Public views never show a group of fewer than k students: `suppress`
blanks such rows (keeping their labels) and says why. A document's `protection` (written by the
process run's disclosure control, `pipeline_lib.process.disclosure`) adds what the figures alone
do not tell: rows hidden so others cannot be derived, quartiles of small groups, rows held at
their previous figures, and documents withheld because the audit failed (docs/privacy.md). The
stored figures stay exact: analysts see them, marked as exact.
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


Reason = Literal["small", "complementary"]


class HeldRow(BaseModel):
    """A row held at what it last published: fewer than k students changed since."""

    values: list[Any] | None = Field(description="the row as last published; None: it was hidden then")
    published_at: dt.datetime


class TableProtection(BaseModel):
    """One table's protection, by row index."""

    hidden: dict[int, Reason] = Field(default_factory=dict, description="rows hidden, and why")
    quantile_rows: list[int] = Field(default_factory=list, description="rows whose quantiles are hidden")
    quantile_columns: list[str] = Field(default_factory=list, description="the table's quantile columns")
    held: dict[int, HeldRow] = Field(default_factory=dict, description="rows showing previous figures")


class HeldDocument(BaseModel):
    """A whole result held at what public views last showed: fewer than k students changed since."""

    public: PublicResult
    published_at: dt.datetime


class DocumentProtection(BaseModel):
    """What public views of a document must hide, hold or withhold (from the run's disclosure control)."""

    k: int = Field(ge=1, description="the k the run protected with")
    tables: dict[str, TableProtection] = Field(default_factory=dict)
    withheld: list[str] = Field(
        default_factory=list, description="why the audit withholds the whole document (analyst-only detail)"
    )
    held: HeldDocument | None = Field(None, description="the whole result as last published, shown instead")


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
    # None in documents written before disclosure control: public views use the row-by-row rule.
    protection: DocumentProtection | None = None


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
    suppressed: list[bool] = Field(description="per row: true if its figures are hidden")
    notes: list[str | None] = Field(
        default_factory=list,
        description="per row: why it is hidden or not updated (fewer than k students, hidden so others "
        "cannot be derived, not updated since a date); null for a row shown as computed",
    )


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
    withheld: str | None = Field(None, description="why the whole result is withheld from public views")
    exact: bool = Field(False, description="true for analysts: the figures as computed, not as published")
    not_updated: str | None = Field(
        None, description="why the figures are those of an earlier run, and since when"
    )


HeldDocument.model_rebuild()
DocumentProtection.model_rebuild()
ResultDocument.model_rebuild()


def _small(value: Any, k: int) -> bool:
    """A group size below k; a missing or unreadable size counts as small (fail closed)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return True
    return value < k


def small_note(k: int) -> str:
    return f"fewer than {k} students"


COMPLEMENTARY_NOTE = "hidden so others cannot be derived"
WITHHELD_NOTE = (
    "withheld: a hidden figure could be worked out from what the result would publish; "
    "it returns once it can be shown safely"
)


def held_note(k: int, since: dt.datetime) -> str:
    return f"not updated: fewer than {k} students changed since {since:%Y-%m-%d %H:%M} UTC"


def public_held_note(k: int, since: dt.datetime) -> str:
    """What analysts read of a result the public sees as published earlier."""
    return (
        f"public views show this result as published {since:%Y-%m-%d %H:%M} UTC: "
        f"fewer than {k} students changed since"
    )


SUMMARY_LEFT_OUT = (
    "Some figures of this result are hidden or not yet updated to protect small groups, so its "
    "one-line summary is left out: see the tables."
)


def suppress(doc: ResultDocument, k: int, *, analyst: bool = False) -> PublicResult:
    """The document as its reader may see it: rows of groups under k students blanked but labelled,
    min/max and analyst-only tables left out unless `analyst`, nothing at all if the whole input is
    small. The document's `protection` (public readers only) also hides complementary rows and
    small groups' quantiles, shows held rows' previous figures, shows a held document as it was
    published, and withholds the whole document when the audit failed (fail closed). Analysts
    see the figures as computed, marked `exact`."""
    held = doc.protection.held if doc.protection else None
    if held is not None and not analyst:
        return held.public.model_copy(update={"not_updated": held_note(k, held.published_at), "exact": False})
    protection = None if analyst else doc.protection
    whole_small = doc.n_input < k
    withheld = bool(protection and protection.withheld)
    tables, altered = [], False
    for table in [] if withheld else doc.tables:
        if table.audience == "analyst" and not analyst:
            continue
        guard = protection.tables.get(table.name, TableProtection()) if protection else TableProtection()
        tables.append(_public_table(table, guard, k, analyst=analyst, whole_small=whole_small))
        altered = altered or _altered(table, tables[-1])
    hide_all = whole_small or withheld
    summary = "" if hide_all else doc.summary
    if summary and not analyst and altered:
        # Written from the computed figures: it would tell what the tables hide or hold back.
        summary = SUMMARY_LEFT_OUT
    withheld_note: str | None
    if analyst and doc.protection and doc.protection.withheld:
        withheld_note = "withheld from public views: " + "; ".join(doc.protection.withheld)
    else:
        withheld_note = WITHHELD_NOTE if withheld else None
    return PublicResult(
        key=doc.key,
        title=doc.title,
        analysis=doc.analysis,
        scope=doc.scope,
        run_id=doc.run_id,
        computed_at=doc.computed_at,
        status=doc.status,
        error=doc.error,
        n_input=None if hide_all else doc.n_input,
        k_min_group=k,
        summary=summary,
        tables=tables,
        chart=None if withheld else doc.chart,
        withheld=withheld_note,
        exact=analyst,
        not_updated=public_held_note(k, held.published_at) if held is not None else None,
    )


def _altered(table: ResultTable, public: PublicTable) -> bool:
    """Whether a public table shows anything other than the computed figures (a row hidden, held
    or with its quantiles blanked)."""
    shown = [table.columns.index(c) for c in public.columns]
    return any(public.suppressed) or any(
        row != [computed[i] for i in shown] for row, computed in zip(public.rows, table.rows, strict=True)
    )


def _public_table(
    table: ResultTable, guard: TableProtection, k: int, *, analyst: bool, whole_small: bool
) -> PublicTable:
    shown = [i for i, c in enumerate(table.columns) if analyst or c not in table.analyst_columns]
    size_index = table.columns.index(table.group_size_column) if table.group_size_column else None
    keep = {table.columns.index(c) for c in table.label_columns if c in table.columns}
    quantiles = {table.columns.index(c) for c in guard.quantile_columns if c in table.columns}
    rows, flags, notes = [], [], []
    for index, computed in enumerate(table.rows):
        row: list[Any] | None = computed
        note: str | None = None
        held = guard.held.get(index)
        if held is not None:  # the previous figures, or hidden if it was hidden then
            row = held.values if held.values is not None else None
            note = held_note(k, held.published_at)
        reason = guard.hidden.get(index)
        # The row-by-row rule stays a floor (tables outside the margins rely on it).
        if whole_small or (size_index is not None and _small(computed[size_index], k)):
            reason = "small"
        if row is not None and size_index is not None and _small(row[size_index], k):
            reason = "small"
        hidden = reason is not None or row is None
        if reason is not None:
            note = small_note(k) if reason == "small" else COMPLEMENTARY_NOTE
        source = computed if row is None else row
        blank = quantiles if index in guard.quantile_rows else set()
        rows.append([source[i] if (i in keep or not (hidden or i in blank)) else None for i in shown])
        flags.append(hidden)
        notes.append(note)
    return PublicTable(
        name=table.name,
        title=table.title,
        columns=[table.columns[i] for i in shown],
        rows=rows,
        suppressed=flags,
        notes=notes,
    )
