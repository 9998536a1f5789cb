"""Data-quality documents for `processed`: why records are quarantined and what the cleaner
changes most, over everything in `quarantine` and `cleaned` now.

The summaries are pure functions of Arrow tables holding only the `reasons` (quarantine) or
`changes` (cleaned) column, so `quality_documents` scans just those columns through the db-api,
without Spark. The clean run's report uses the same summaries with `examples=True`; documents
leave examples out: they quote what students typed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib.cleaning.rules import REASONS
from pipeline_lib.db_client import DbApiClient
from pipeline_lib.results import ResultDocument, ResultTable

REASONS_KEY = "quality:reject_reasons"
CHANGES_KEY = "quality:top_changes"
TOP_CHANGES = 20


def reason_text(code: str) -> str:
    """A reason code in words, without the value it quotes: 'ses is outside -5..5'."""
    return REASONS.get(code, code).replace(" {value}", "").replace("{value}", "a value")


def reasons_summary(quarantine: pa.Table, *, examples: bool = False) -> pd.DataFrame:
    """reason, records: quarantined records per reason code (a record counts once per reason),
    most frequent first; with `examples`, also one message quoting a rejected value."""
    flat = pc.list_flatten(quarantine.column("reasons"))
    empty = pa.array([], pa.string())
    columns = {"reason": pc.struct_field(flat, "code") if len(flat) else empty}
    if examples:
        columns["example"] = pc.struct_field(flat, "message") if len(flat) else empty
    return _counted(pa.table(columns), ["reason"])


def changes_summary(cleaned: pa.Table, *, examples: bool = False) -> pd.DataFrame:
    """field, rule, records: how many cleaned records each rule changed in each field, most
    first; with `examples`, also one change as "'before' -> 'after'"."""
    flat = pc.list_flatten(cleaned.column("changes"))
    empty = pa.array([], pa.string())
    if len(flat) == 0:
        columns = {"field": empty, "rule": empty, **({"example": empty} if examples else {})}
        return _counted(pa.table(columns), ["field", "rule"])
    rules = pc.struct_field(flat, "rules")
    changes = pc.take(flat, pc.list_parent_indices(rules))
    columns = {"field": pc.struct_field(changes, "field"), "rule": pc.list_flatten(rules)}
    if examples:
        before, after = (pc.fill_null(pc.struct_field(changes, side), "") for side in ("before", "after"))
        columns["example"] = pc.binary_join_element_wise("'", before, "' -> '", after, "'", "")
    return _counted(pa.table(columns), ["field", "rule"])


def _counted(rows: pa.Table, keys: list[str]) -> pd.DataFrame:
    """`rows` counted by `keys` into `records` (and the least `example`, when there is one),
    most frequent first."""
    aggregations = [(keys[-1], "count"), *([("example", "min")] if "example" in rows.column_names else [])]
    counts = rows.group_by(keys).aggregate(aggregations).to_pandas()
    counts = counts.rename(columns={f"{keys[-1]}_count": "records", "example_min": "example"})
    order = counts.sort_values(["records", *keys], ascending=[False, *[True] * len(keys)], ignore_index=True)
    return order[[*keys, "records", *(["example"] if "example" in counts else [])]].astype(
        {"records": "int64"}
    )


def reasons_document(
    summary: pd.DataFrame, *, quarantined: int, run_id: str, computed_at: dt.datetime
) -> ResultDocument:
    """`quality:reject_reasons`; `quarantined` is the number of records the summary covers."""
    rows = [
        [str(r.reason), reason_text(str(r.reason)), int(r.records)] for r in summary.itertuples(index=False)
    ]
    top = f" The most frequent: {reason_text(rows[0][0])} ({rows[0][2]:,})." if rows else ""
    return ResultDocument(
        key=REASONS_KEY,
        title="Why records are quarantined",
        analysis="quality",
        scope="quarantine",
        run_id=run_id,
        computed_at=computed_at,
        n_input=quarantined,
        summary=f"{quarantined:,} records are in quarantine.{top}",
        tables=[
            ResultTable(
                name="reasons",
                title="Quarantined records by reason",
                columns=["reason", "text", "records"],
                rows=rows,
                group_size_column="records",
                label_columns=["reason", "text"],
            )
        ],
    )


def changes_document(
    summary: pd.DataFrame, *, cleaned: int, run_id: str, computed_at: dt.datetime, top: int = TOP_CHANGES
) -> ResultDocument:
    """`quality:top_changes`: the `top` most frequent changes; `cleaned` records were looked at."""
    rows = [[str(r.field), str(r.rule), int(r.records)] for r in summary.head(top).itertuples(index=False)]
    return ResultDocument(
        key=CHANGES_KEY,
        title="What the cleaner changes most",
        analysis="quality",
        scope="cleaned",
        run_id=run_id,
        computed_at=computed_at,
        n_input=cleaned,
        summary=f"Of {cleaned:,} cleaned records, the {len(rows)} most frequent changes by field and rule.",
        tables=[
            ResultTable(
                name="changes",
                title="Changes by field and rule",
                columns=["field", "rule", "records"],
                rows=rows,
                group_size_column="records",
                label_columns=["field", "rule"],
            )
        ],
    )


def quality_documents(client: DbApiClient, *, run_id: str, computed_at: dt.datetime) -> list[ResultDocument]:
    """Both documents over the whole `quarantine` and `cleaned` collections (one column each)."""
    quarantine = client.scan("quarantine", columns=["reasons"])
    cleaned = client.scan("cleaned", columns=["changes"])
    stamp = {"run_id": run_id, "computed_at": computed_at}
    return [
        reasons_document(
            _summary(quarantine, "reasons", reasons_summary), quarantined=quarantine.num_rows, **stamp
        ),
        changes_document(_summary(cleaned, "changes", changes_summary), cleaned=cleaned.num_rows, **stamp),
    ]


def _summary(table: pa.Table, column: str, summarise: Callable[[pa.Table], pd.DataFrame]) -> pd.DataFrame:
    if column not in table.column_names:  # an empty collection scans with no columns at all
        table = pa.table({column: pa.array([], pa.list_(pa.null()))})
    return summarise(table)
