"""One clean run: read `raw` with Spark, clean it, commit `cleaned` and `quarantine` in batches.

The read, the cleaning of each field and the checks of each record are one pass: the scan workers
clean and check each batch (`by_value`, in Arrow) on its way to Spark, which materialises the
records once; the report's `read` seconds are that pass, `clean` the rest (split, resubmissions,
report), `write` the commits still running after it.

Each CommitClean call upserts its records and deletes exactly their raw ids (and those of the
resubmissions they absorbed) in one atomic unit, so a run killed at any moment loses nothing and
duplicates nothing: the next run cleans what is left. Records that arrive during a run stay in
`raw` for the next one. The notebook `notebooks/clean.ipynb` calls `run_clean` and shows the report.

Nothing grows with the data on the driver: the executors commit their own partitions (each task
opens a client of the driver client's endpoint and fence, and commits at most `batch_size` rows
per call), and the report's counts and summaries are Spark aggregations; the driver receives one
small row per committed batch and one per summary line.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from pipeline_lib.clean import by_value, pandas_job, rules, spark_engine
from pipeline_lib.clean.commits import COMMITS_IN_FLIGHT, Part, commit_each, committed
from pipeline_lib.clean.pandas_job import known_schools
from pipeline_lib.clean.report import COUNTS, CleanReport
from pipeline_lib.clean.summaries import spark_changes_summary, spark_reasons_summary
from pipeline_lib.client.core import Endpoint
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RAW
from pipeline_lib.spark.source import default_partitions, read_through
from pipeline_lib.wire.requests import Fence

RAW_SCHEMA = StructType([StructField(name, StringType()) for name in (*rules.META, *rules.FIELD_NAMES)])


def run_clean(
    spark: SparkSession | None,
    client: DbApiClient,
    *,
    run_id: str,
    batch_size: int = 5000,
    limit: int = 0,
    dry_run: bool = False,
    partitions: int | None = None,
) -> CleanReport:
    """Clean `raw` with Spark, or (`spark` None) with pandas in this process, which the engine
    choice (`pipeline_lib.spark.engine`) keeps to inputs that fit in memory."""
    if spark is None:
        return pandas_job.run_clean_pandas(
            client, run_id=run_id, batch_size=batch_size, limit=limit, dry_run=dry_run
        )
    report = CleanReport(run_id=run_id, dry_run=dry_run, engine="spark")
    started = time.perf_counter()
    # The scan workers clean and check each record as the batches arrive (`by_value`).
    check = functools.partial(by_value.checked_batches, schools=sorted(known_schools(client)))
    checked = read_through(
        spark, client, RAW, RAW_SCHEMA, check, spark_engine.CHECKED_SCHEMA, partitions=partitions
    )
    if limit:
        checked = checked.limit(limit)
    # Materialised once: the ids this run deletes are exactly the ones it read and cleaned, even
    # if `raw` grows meanwhile (Spark would otherwise re-read it for every action).
    checked = checked.localCheckpoint(eager=True)
    report.records_in = checked.count()
    report.seconds["read"] = time.perf_counter() - started

    started = time.perf_counter()
    cleaned, quarantine, no_consent = spark_engine.split(checked)
    committer = Committer.of(client, batch_size)
    # One driver thread starts the commit jobs: rejects are committed by the executors while Spark
    # finds the resubmissions among the cleaned records and builds the report.
    with ThreadPoolExecutor(1, thread_name_prefix="commit") as thread:
        commits: list[Future[int]] = []
        if not dry_run:
            commits.append(thread.submit(committer.commit, quarantine, "quarantine"))
            commits.append(thread.submit(committer.commit, no_consent, "raw_ids"))
        # Materialised on the executors: the commit and the report read it, without finding the
        # resubmissions twice.
        cleaned = cleaned.localCheckpoint(eager=True)
        if not dry_run:
            commits.append(thread.submit(committer.commit, cleaned, "cleaned"))
        totals = cleaned.agg(
            F.count(F.lit(1)),
            F.sum(F.coalesce(F.size("duplicates"), F.lit(0))),
            F.sum(F.col("duplicate_conflict").cast("int")),
        ).first()
        assert totals is not None  # a global aggregation has one row
        report.cleaned, report.duplicates_collapsed, report.conflicts_flagged = (int(v or 0) for v in totals)
        report.quarantined = quarantine.count()
        report.without_consent = no_consent.count()
        report.reasons = spark_reasons_summary(quarantine, examples=True)
        report.changes = spark_changes_summary(cleaned, examples=True)
        report.seconds["clean"] = time.perf_counter() - started

        started = time.perf_counter()
        report.raw_deleted = sum(committed(commit) for commit in commits)
    # Only the commits still running once the clean and its report are done.
    report.seconds["write"] = time.perf_counter() - started
    return report


__all__ = ["COUNTS", "RAW_SCHEMA", "CleanReport", "Committer", "run_clean"]
COMMITTED = "raw_deleted long"  # what each committed batch reports to the driver


@dataclass(frozen=True)
class Committer:
    """CommitClean from Spark's executors, at most `batch_size` rows a call. It travels to them
    by value: the driver client's endpoint (address, token, message size, TLS as PEM), fence and
    deadlines, so an executor reads no settings and a run that lost its lease cannot write on."""

    endpoint: Endpoint
    fence: Fence | None
    timeout: float
    stream_timeout: float
    batch_size: int

    @classmethod
    def of(cls, client: DbApiClient, batch_size: int) -> Committer:
        return cls(client.endpoint, client.fence, client.timeout, client.stream_timeout, max(1, batch_size))

    def commit(self, df: DataFrame, part: Part) -> int:
        """Commit `df` as `part` (records of `cleaned` or `quarantine`, or raw ids to delete):
        the raw records deleted.

        In one task per two task slots: each task keeps COMMITS_IN_FLIGHT calls in flight, which
        keeps the db-api as busy as a task per slot did, and the other slots find the resubmissions
        and build the report meanwhile (with every slot committing, they waited for the commits)."""
        tasks = max(1, default_partitions(df.sparkSession) // COMMITS_IN_FLIGHT)
        commit = functools.partial(self.commit_partition, part=part)
        committed = df.coalesce(tasks).mapInArrow(commit, COMMITTED)
        total = committed.agg(F.sum("raw_deleted")).first()
        return int(total[0] or 0) if total is not None else 0

    def commit_partition(self, batches: Iterator[pa.RecordBatch], part: Part) -> Iterator[pa.RecordBatch]:
        """On an executor: one Spark partition, one client, one CommitClean per chunk, pipelined."""
        chunks = _chunks(batches, self.batch_size)
        first = next(chunks, None)
        if first is None:
            return  # an empty partition calls nothing
        client = DbApiClient.for_endpoint(
            self.endpoint, fence=self.fence, timeout=self.timeout, stream_timeout=self.stream_timeout
        )
        try:
            for deleted in commit_each(client, ((chunk, part) for chunk in itertools.chain([first], chunks))):
                yield pa.record_batch({"raw_deleted": [deleted]})
        finally:
            client.close()


def _chunks(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """`batches` regrouped into tables of `size` rows (the last may be shorter): at most one
    chunk and one incoming batch are held at a time."""
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        held.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(held)
            yield table.slice(0, size)
            rest = table.slice(size)
            held, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(held)
