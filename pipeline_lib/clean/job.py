"""One clean run: read `raw` with Spark, clean it, commit `cleaned` and `quarantine` in batches.

Each CommitClean call upserts its records and deletes exactly their raw ids (and those of the
resubmissions they absorbed) in one atomic unit, so a run killed at any moment loses nothing and
duplicates nothing: the next run cleans what is left. Records that arrive during a run stay in
`raw` for the next one. The notebook `notebooks/clean.ipynb` calls `run_clean` and shows the report.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from pipeline_lib.clean import rules, spark_engine
from pipeline_lib.clean.summaries import changes_summary, reasons_summary
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RAW, SCHOOLS
from pipeline_lib.spark.source import read

RAW_SCHEMA = StructType([StructField(name, StringType()) for name in (*rules.META, *rules.FIELD_NAMES)])
# The counts of a `CleanReport` its run record keeps.
COUNTS = (
    "records_in",
    "cleaned",
    "quarantined",
    "duplicates_collapsed",
    "conflicts_flagged",
    "without_consent",
    "raw_deleted",
)


@dataclass
class CleanReport:
    run_id: str
    dry_run: bool
    records_in: int = 0
    cleaned: int = 0
    quarantined: int = 0
    duplicates_collapsed: int = 0
    conflicts_flagged: int = 0
    without_consent: int = 0
    raw_deleted: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    reasons: pd.DataFrame = field(default_factory=pd.DataFrame)
    changes: pd.DataFrame = field(default_factory=pd.DataFrame)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}

    def summary(self) -> str:
        """The run in one sentence, for the report."""
        share = self.cleaned / self.records_in if self.records_in else 0
        dry = " (dry run: nothing committed)" if self.dry_run else ""
        return (
            f"Run `{self.run_id}`{dry}: {self.records_in:,} raw records in, {self.cleaned:,} cleaned "
            f"({share:.0%}), {self.quarantined:,} quarantined, {self.duplicates_collapsed:,} exact "
            f"resubmissions collapsed, {self.conflicts_flagged:,} records of students with differing "
            f"answers flagged, {self.without_consent:,} without consent discarded; "
            f"{self.raw_deleted:,} raw records removed."
        )


def run_clean(
    spark: SparkSession,
    client: DbApiClient,
    *,
    run_id: str,
    batch_size: int = 5000,
    limit: int = 0,
    dry_run: bool = False,
    partitions: int | None = None,
) -> CleanReport:
    report = CleanReport(run_id=run_id, dry_run=dry_run)
    started = time.perf_counter()
    raw = read(spark, client, RAW, RAW_SCHEMA, partitions=partitions)
    if limit:
        raw = raw.limit(limit)
    # Materialised once: the ids this run deletes are exactly the ones it read and cleaned, even
    # if `raw` grows meanwhile (Spark would otherwise re-read it for every action).
    raw = raw.localCheckpoint(eager=True)
    report.records_in = raw.count()
    school_ids = StructType([StructField("school_id", StringType())])
    schools = read(spark, client, SCHOOLS, school_ids, partitions=partitions)
    report.seconds["read"] = time.perf_counter() - started

    started = time.perf_counter()
    cleaned, quarantine, no_consent = spark_engine.clean(raw, schools)
    quarantine_table = quarantine.toArrow()
    without_consent = no_consent.toArrow().column("submission_id").to_pylist()
    # One committer thread: rejects are committed while Spark finds the resubmissions among the
    # cleaned records and builds the report (the db-api does its part in its own process).
    with ThreadPoolExecutor(1, thread_name_prefix="commit") as committer:
        commits: list[Future[int]] = []
        if not dry_run:
            commits.append(
                committer.submit(_commit_rejects, client, quarantine_table, without_consent, batch_size)
            )
        cleaned_table = cleaned.toArrow()
        if not dry_run:
            commits.append(committer.submit(_commit_cleaned, client, cleaned_table, batch_size))
        absorbed = pa.chunked_array(
            cleaned_table.column("duplicates").combine_chunks().flatten(), pa.string()
        )
        report.cleaned, report.quarantined = cleaned_table.num_rows, quarantine_table.num_rows
        report.duplicates_collapsed = len(absorbed)
        report.conflicts_flagged = int(pc.sum(cleaned_table.column("duplicate_conflict")).as_py() or 0)
        report.without_consent = len(without_consent)
        report.reasons = reasons_summary(quarantine_table, examples=True)
        report.changes = changes_summary(cleaned_table, examples=True)
        report.seconds["clean"] = time.perf_counter() - started

        started = time.perf_counter()
        report.raw_deleted = sum(commit.result() for commit in commits)
    # Only the commits still running once the clean and its report are done.
    report.seconds["write"] = time.perf_counter() - started
    return report


def _commit_cleaned(client: DbApiClient, cleaned: pa.Table, batch_size: int) -> int:
    """CommitClean in batches; a kept record and the resubmissions it absorbed go in one batch."""
    deleted = 0
    for offset in range(0, cleaned.num_rows, batch_size):
        chunk = cleaned.slice(offset, batch_size)
        ids = chunk.column("submission_id").to_pylist()
        ids += [i for others in chunk.column("duplicates").to_pylist() for i in others or []]
        deleted += client.commit_clean(chunk, None, ids).raw_deleted
    return deleted


def _commit_rejects(
    client: DbApiClient, quarantine: pa.Table, without_consent: list[str], batch_size: int
) -> int:
    """CommitClean in batches: quarantined records, then the raw ids of those without consent."""
    deleted = 0
    for offset in range(0, quarantine.num_rows, batch_size):
        chunk = quarantine.slice(offset, batch_size)
        deleted += client.commit_clean(None, chunk, chunk.column("submission_id").to_pylist()).raw_deleted
    for offset in range(0, len(without_consent), batch_size):
        deleted += client.commit_clean(None, None, without_consent[offset : offset + batch_size]).raw_deleted
    return deleted
