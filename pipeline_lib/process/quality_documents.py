"""Data-quality documents for `processed`: why records are quarantined and what the cleaner
changes most, over everything in `quarantine` and `cleaned` now.

The summaries (`pipeline_lib.clean.summaries`) need only the `reasons` (quarantine) or `changes`
(cleaned) column, so `quality_documents` scans just those columns through the db-api, without
Spark. Documents leave the summaries' examples out: they quote what students typed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import pyarrow as pa

from pipeline_lib.clean.summaries import changes_summary, reason_text, reasons_summary
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.process.results import ResultDocument, ResultTable

REASONS_KEY = "quality:reject_reasons"
CHANGES_KEY = "quality:top_changes"
TOP_CHANGES = 20


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
