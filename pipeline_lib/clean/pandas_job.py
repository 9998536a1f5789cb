"""One clean run in this process with pandas: for inputs that fit in memory, where starting Spark
would cost more than the whole clean (`pipeline_lib.spark.engine` chooses).

The same rules (`pandas_engine`, proven to clean as `spark_engine` does), the same commits (one
atomic CommitClean per `batch_size` records, deleting exactly its raw ids), and the same report
as the Spark run: a run killed at any moment loses nothing and duplicates nothing, and records
that arrive during a run stay in `raw` for the next one.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa

from pipeline_lib.clean import pandas_engine, rules
from pipeline_lib.clean.commits import Part, commit_each
from pipeline_lib.clean.report import CleanReport
from pipeline_lib.clean.summaries import changes_summary, reasons_summary
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RAW, SCHOOLS

# Every raw field as text, as the Spark run reads it (the db-api casts what was stored).
RAW_TEXT = pa.schema([(name, pa.string()) for name in (*rules.META, *rules.FIELD_NAMES)])
# The lists the summaries read, typed even when no record has one (an empty run, a clean raw).
REASONS_TYPE = pa.list_(pa.struct([("code", pa.string()), ("field", pa.string()), ("message", pa.string())]))
CHANGES_TYPE = pa.list_(
    pa.struct(
        [
            ("field", pa.string()),
            ("before", pa.string()),
            ("after", pa.string()),
            ("rules", pa.list_(pa.string())),
        ]
    )
)


def read_raw(client: DbApiClient, limit: int = 0) -> pd.DataFrame:
    """`raw` as text, `None` for a missing value; at most `limit` records (0: all)."""
    table = client.scan(RAW, columns=RAW_TEXT.names, schema=RAW_TEXT, limit=max(0, limit))
    frame = table.select(RAW_TEXT.names).to_pandas()
    # pyarrow gives text as object columns with None already; converting every column again cost
    # 1.5 s of a 1,000,000-record read. Only another dtype (pandas' own string type) is converted.
    other = [name for name, dtype in frame.dtypes.items() if not pd.api.types.is_object_dtype(dtype)]
    if other:
        frame[other] = frame[other].astype(object).where(frame[other].notna(), None)
    return frame


@contextlib.contextmanager
def cyclic_collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a bulk build: the clean makes a list of reason or
    change dicts per record, none in a cycle, and each full collection walked all the ones made so
    far (300,000 dirty records: the clean took 4.6 s with it, 3.1 s without; median of 2). Whatever
    cycles the block leaves are collected once it is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def known_schools(client: DbApiClient) -> set[str]:
    found = client.scan(SCHOOLS, columns=["school_id"], schema=pa.schema([("school_id", pa.string())]))
    return {s for s in found.column("school_id").to_pylist() if s is not None}


def run_clean_pandas(
    client: DbApiClient,
    *,
    run_id: str,
    batch_size: int = 5000,
    limit: int = 0,
    dry_run: bool = False,
) -> CleanReport:
    report = CleanReport(run_id=run_id, dry_run=dry_run, engine="pandas")
    started = time.perf_counter()
    raw = read_raw(client, limit)
    schools = known_schools(client)
    report.records_in = len(raw)
    report.seconds["read"] = time.perf_counter() - started

    started = time.perf_counter()
    with cyclic_collector_paused():
        result = pandas_engine.clean(raw, schools)
    cleaned, quarantine = result.cleaned, result.quarantine
    placed = set(cleaned["submission_id"]) | set(quarantine["submission_id"])
    placed.update(i for others in cleaned["duplicates"] for i in others)
    without_consent = [i for i in result.raw_ids if i not in placed]
    report.cleaned = len(cleaned)
    report.quarantined = len(quarantine)
    report.duplicates_collapsed = int(cleaned["duplicates"].map(len).sum())
    report.conflicts_flagged = int(cleaned["duplicate_conflict"].sum())
    report.without_consent = result.without_consent
    reasons = pa.array(list(quarantine["reasons"]), REASONS_TYPE)
    changes = pa.array(list(cleaned["changes"]), CHANGES_TYPE)
    report.reasons = reasons_summary(pa.table({"reasons": reasons}), examples=True)
    report.changes = changes_summary(pa.table({"changes": changes}), examples=True)
    report.seconds["clean"] = time.perf_counter() - started

    started = time.perf_counter()
    if not dry_run:
        ids = pd.DataFrame({"submission_id": pd.Series(without_consent, dtype=object)})
        parts: list[tuple[pd.DataFrame, Part]] = [
            (quarantine, "quarantine"),
            (ids, "raw_ids"),
            (cleaned, "cleaned"),
        ]
        report.raw_deleted = commit_pipelined(client, parts, max(1, batch_size))
    report.seconds["write"] = time.perf_counter() - started
    return report


def commit_pipelined(client: DbApiClient, parts: list[tuple[pd.DataFrame, Part]], size: int) -> int:
    """Commit each part's chunks of at most `size` rows, pipelined (`commits.commit_each`): the
    raw records deleted."""
    chunks = ((chunk, part) for frame, part in parts for chunk in _chunks(frame, size))
    return sum(commit_each(client, chunks))


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pa.Table]:
    """`frame` as Arrow tables of at most `size` rows (missing numbers as nulls)."""
    for start in range(0, len(frame), size):
        yield pa.Table.from_pandas(frame.iloc[start : start + size], preserve_index=False)
