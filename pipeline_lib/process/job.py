"""One process run with the catalog's analyses as shipped: read `cleaned` (with `schools` joined)
through the db-api with Spark (or, given no session, with pandas), run every analysis, protect the
public views and upsert one document per result into `processed`.

`notebooks/process.ipynb` writes the same run out cell by cell, each analysis as its
specification (`pipeline_lib.process.run`); `run_process` is that run in one call, for benchmarks,
tests and scripts. Every run writes the same fixed set of keys (`result_keys.ANALYSIS_KEYS`), a
failed analysis as a document that says why. Documents are written only after every analysis has
finished: a run that dies leaves the previous results whole. The same input and seed give the
same documents, apart from `run_id` and `computed_at`.

Before writing, the disclosure control (`pipeline_lib.process.disclosure`, docs/privacy.md)
protects every document's public view; the release it publishes is kept, analyst-only, in
`releases` under `RELEASE_ID` for the next run to difference against (`release_store`).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.process.release_store import RELEASE_ID, UnreadableRelease, previous_release
from pipeline_lib.process.report import COUNTS, ProcessReport
from pipeline_lib.process.run import (
    CLEANED_SCHEMA,
    DEFAULT_MAX_MODEL_ROWS,
    SCHOOLS_SCHEMA,
    ProcessRun,
    publish_default,
    read_schools,
)

__all__ = [
    "CLEANED_SCHEMA",
    "COUNTS",
    "DEFAULT_MAX_MODEL_ROWS",
    "RELEASE_ID",
    "SCHOOLS_SCHEMA",
    "ProcessReport",
    "UnreadableRelease",
    "previous_release",
    "read_schools",
    "run_process",
]


def run_process(
    spark: SparkSession | None,
    client: DbApiClient,
    *,
    run_id: str,
    k_min_group: int = 5,
    k_quantiles: int | None = None,
    protection_ratio: float | None = None,
    max_model_rows: int = DEFAULT_MAX_MODEL_ROWS,
    seed: int = 0,
    at_risk_quantile: float = 0.25,
    partitions: int | None = None,
    write: bool = True,
    now: dt.datetime | None = None,
) -> ProcessReport:
    """Analyse `cleaned`, protect the public views and (unless not `write`) upsert the documents
    into `processed`. `k_quantiles` and `protection_ratio` default to the settings' (k_quantiles:
    twice `k_min_group` unless set)."""
    run = ProcessRun.start(
        spark,
        client,
        run_id=run_id,
        k_min_group=k_min_group,
        max_model_rows=max_model_rows,
        seed=seed,
        partitions=partitions,
        now=now,
    )
    publish_default(run, at_risk_quantile=at_risk_quantile)
    return run.finish(write=write, k_quantiles=k_quantiles, protection_ratio=protection_ratio)
