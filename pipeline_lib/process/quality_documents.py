"""Data-quality documents for `processed`: why records are quarantined and what the cleaner
changes most, over everything in `quarantine` and `cleaned` when they are counted (a process run
counts them in a thread from just after its read, beside its analyses: `process.run`).

The summaries (`pipeline_lib.clean.summaries`) need only the `reasons` (quarantine) or `changes`
(cleaned) column, so `quality_documents` scans just those columns through the db-api, without
Spark, and counts them a batch at a time. Documents leave the summaries' examples out: they quote
what students typed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from pipeline_lib.clean.summaries import changes_summary, merge_counts, reason_text, reasons_summary
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import CLEANED, QUARANTINE
from pipeline_lib.process.results import ResultDocument, ResultTable, RunStamp, stamped_document

# How many of the most frequent changes `quality:top_changes` lists.
CHANGES_SHOWN = 20
# Rows per scanned batch: one batch of one column is all the driver holds of a collection.
SCAN_BATCH = 20_000


@dataclass(frozen=True)
class _Counts:
    """A data-quality document: one table of `labels` and the records under them (its group size)."""

    key: str
    scope: str
    title: str
    table: str
    table_title: str
    labels: tuple[str, ...]

    def document(
        self, stamp: RunStamp, rows: list[list[Any]], *, n_input: int, summary: str
    ) -> ResultDocument:
        columns = [*self.labels, "records"]
        table = ResultTable(
            name=self.table,
            title=self.table_title,
            columns=columns,
            rows=rows,
            group_size_column="records",
            label_columns=list(self.labels),
        )
        return stamped_document(
            self.key,
            stamp,
            scope=self.scope,
            title=self.title,
            n_input=n_input,
            summary=summary,
            tables=[table],
        )


REASONS = _Counts(
    keys.REJECT_REASONS,
    QUARANTINE,
    "Why records are quarantined",
    "reasons",
    "Quarantined records by reason",
    ("reason", "text"),
)
CHANGES = _Counts(
    keys.TOP_CHANGES,
    CLEANED,
    "What the cleaner changes most",
    "changes",
    "Changes by field and rule",
    ("field", "rule"),
)


def reasons_document(summary: pd.DataFrame, stamp: RunStamp, *, quarantined: int) -> ResultDocument:
    """`quality:reject_reasons`; `quarantined` is the number of records the summary covers."""
    rows: list[list[Any]] = [
        [str(r.reason), reason_text(str(r.reason)), int(r.records)] for r in summary.itertuples(index=False)
    ]
    top = f" The most frequent: {reason_text(rows[0][0])} ({rows[0][2]:,})." if rows else ""
    summary_text = f"{quarantined:,} records are in quarantine.{top}"
    return REASONS.document(stamp, rows, n_input=quarantined, summary=summary_text)


def changes_document(
    summary: pd.DataFrame, stamp: RunStamp, *, cleaned: int, top: int = CHANGES_SHOWN
) -> ResultDocument:
    """`quality:top_changes`: the `top` most frequent changes; `cleaned` records were looked at."""
    rows = [[str(r.field), str(r.rule), int(r.records)] for r in summary.head(top).itertuples(index=False)]
    summary_text = f"Of {cleaned:,} cleaned records, the {len(rows)} most frequent changes by field and rule."
    return CHANGES.document(stamp, rows, n_input=cleaned, summary=summary_text)


def quality_documents(client: DbApiClient, *, run_id: str, computed_at: dt.datetime) -> list[ResultDocument]:
    """Both documents over the whole `quarantine` and `cleaned` collections (one column each),
    counted a batch at a time: the driver holds one batch and the counts, however many records."""
    reasons, quarantined = _counted_scan(client, QUARANTINE, "reasons", reasons_summary)
    changes, cleaned = _counted_scan(client, CLEANED, "changes", changes_summary)
    stamp = RunStamp(run_id, computed_at)
    return [
        reasons_document(reasons, stamp, quarantined=quarantined),
        changes_document(changes, stamp, cleaned=cleaned),
    ]


def _counted_scan(
    client: DbApiClient, collection: str, column: str, summarise: Callable[[pa.Table], pd.DataFrame]
) -> tuple[pd.DataFrame, int]:
    """`summarise` of `column` over the whole collection, and its number of records."""
    parts, records = [], 0
    for batch in client.scan_batches(collection, columns=[column], batch_size=SCAN_BATCH):
        records += batch.num_rows
        parts.append(_summary(pa.Table.from_batches([batch]), column, summarise))
    if not parts:  # an empty collection
        parts.append(_summary(pa.table({}), column, summarise))
    return merge_counts(parts), records


def _summary(table: pa.Table, column: str, summarise: Callable[[pa.Table], pd.DataFrame]) -> pd.DataFrame:
    if column not in table.column_names:  # an empty collection scans with no columns at all
        table = pa.table({column: pa.array([], pa.list_(pa.null()))})
    return summarise(table)
