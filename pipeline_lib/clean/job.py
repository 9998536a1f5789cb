"""One clean run: read `raw` with Spark, clean it, commit `cleaned` and `quarantine` in batches.

The read, the cleaning and the checks of each record are one pass, in the scan workers
(`checked_read`): they commit the rejects (quarantine, and the ids of records without consent)
as they find them, and hand Spark the kept records, which Spark materialises once. Then one job
finds the resubmissions among them, and its tasks commit the cleaned records as they come, and
those past `rules.MAX_DUPLICATES` as quarantine, and count them (`counted_commit`). The report's
`read` seconds are the first pass, `clean` that job.

Each CommitClean call upserts its records and deletes exactly their raw ids (and those of the
resubmissions they absorbed) in one atomic unit, so a run killed at any moment loses nothing and
duplicates nothing: the next run cleans what is left. Records that arrive during a run stay in
`raw` for the next one. The notebook `notebooks/clean.ipynb` calls `run_clean` and shows the report.

Nothing grows with the data on the driver: the executors commit (each task opens a client of the
driver client's endpoint and fence, and commits at most `batch_size` rows per call); the driver
receives one tally per task.
"""

from __future__ import annotations

import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StringType, StructField, StructType

from pipeline_lib.clean import pandas_job, rules, spark_engine
from pipeline_lib.clean.checked_read import TALLY, CheckedRead, Tally, read_schema
from pipeline_lib.clean.counted_commit import TALLY_SCHEMA, CleanedTally, CountedCommit
from pipeline_lib.clean.pandas_job import known_schools
from pipeline_lib.clean.report import COUNTS, CleanReport
from pipeline_lib.clean.spark_commits import Committer
from pipeline_lib.clean.summaries import merge_counts
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RAW
from pipeline_lib.spark.source import read_through

RAW_SCHEMA = StructType([StructField(name, StringType()) for name in (*rules.META, *rules.FIELD_NAMES)])
READ_SCHEMA = from_arrow_schema(read_schema())  # what the scan workers hand Spark


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
    committer = Committer.of(client, batch_size)
    # The scan workers clean and check each record as they read it, commit the rejects at once and
    # hand Spark the kept records (`checked_read`). A limit is read by one task.
    read = CheckedRead(tuple(sorted(known_schools(client))), committer, limit, commit=not dry_run)
    records = read_through(
        spark, client, RAW, RAW_SCHEMA, read, READ_SCHEMA, partitions=1 if limit else partitions
    )
    # Materialised once: the ids this run deletes are exactly the ones it read and cleaned, even
    # if `raw` grows meanwhile (Spark would otherwise re-read it, and commit again, per action).
    records = records.localCheckpoint(eager=True)
    tallies = records.where(F.col(TALLY).isNotNull()).select(TALLY).collect()
    tally = Tally.added([Tally.from_json(row[0]) for row in tallies])
    report.records_in, report.quarantined = tally.records, tally.quarantined
    report.without_consent, report.reasons = tally.without_consent, tally.reasons_summary()
    report.seconds["read"] = time.perf_counter() - started

    started = time.perf_counter()
    kept = records.where(F.col(TALLY).isNull()).drop(TALLY)
    # One job: its tasks find the resubmissions, commit the cleaned records as they come and
    # count them for the report (`counted_commit`).
    marked = spark_engine.mark_duplicates(kept)
    rows = marked.mapInArrow(CountedCommit(committer, commit=not dry_run), TALLY_SCHEMA).collect()
    cleaned = CleanedTally.added([CleanedTally.from_json(row[0]) for row in rows])
    report.cleaned, report.duplicates_collapsed = cleaned.cleaned, cleaned.duplicates_collapsed
    report.conflicts_flagged, report.changes = cleaned.conflicts_flagged, cleaned.changes_summary()
    # The resubmissions past the bound, quarantined by that job, with the scan workers' rejects.
    report.quarantined += cleaned.quarantined
    if cleaned.quarantined:
        report.reasons = merge_counts([r for r in (report.reasons, cleaned.reasons_summary()) if len(r)])
    report.raw_deleted = tally.raw_deleted + cleaned.raw_deleted
    report.seconds["clean"] = time.perf_counter() - started
    return report


__all__ = ["COUNTS", "RAW_SCHEMA", "CleanReport", "Committer", "run_clean"]
