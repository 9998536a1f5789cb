"""A populated system for the dashboard tests and benchmark, built with the real functions.

Demo records (a seeded synthetic population with typing mistakes) are cleaned by the pandas
engine in a few batches, one run record per batch, as successive clean runs would; `processed`
gets the documents of the real analyses and of `distributions` and `quality_docs`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from db_api.server import start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.clean import pandas_engine
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.demo.population import Population
from pipeline_lib.demo.rows import demo_rows
from pipeline_lib.process import quality_documents as quality_docs
from pipeline_lib.process.analysis import distributions
from pipeline_lib.process.results import ResultDocument
from pipeline_lib.runs import records
from pipeline_lib.runs.records import RunError, RunRecord
from tests.conftest import TOKEN

STARTED = dt.datetime(2026, 5, 4, 6, 0, tzinfo=dt.UTC)
PROCESS_RUN = "process-20260504T090000Z-abc123"
COMPUTED_AT = dt.datetime(2026, 5, 4, 10, 3, tzinfo=dt.UTC)


@dataclass
class Snapshot:
    population: Population
    cleaned: pd.DataFrame
    quarantine: pd.DataFrame
    runs: list[RunRecord]
    processed: list[ResultDocument] = field(default_factory=list)

    @property
    def students(self) -> pd.DataFrame:
        """Cleaned students with their school's sector and size joined, as the analyses read them."""
        schools = self.population.schools.rename(columns={"size": "school_size"})
        return self.cleaned.merge(schools[["school_id", "sector", "school_size"]], on="school_id")

    def document(self, key: str) -> ResultDocument:
        return next(d for d in self.processed if d.key == key)


def _run(notebook: str, started: dt.datetime, minutes: float, counts: dict, **extra: object) -> RunRecord:
    record = RunRecord(
        run_id=records.new_run_id(notebook, started),
        notebook=notebook,
        started_at=started,
        code_version="git:test",
        host="test",
        counts=counts,
        **extra,
    )
    record.status = "succeeded"
    record.ended_at = started + dt.timedelta(minutes=minutes)
    record.duration_seconds = minutes * 60
    return record


def clean_in_batches(
    students: int, schools: int, *, batches: int = 4, dirty: float = 0.08, seed: int = 7
) -> Snapshot:
    """The demo records cleaned in `batches` successive runs (one run record each)."""
    population, raw = demo_rows(students, schools, dirty, seed)
    known = set(population.schools["school_id"])
    cleaned, quarantine, runs = [], [], []
    for i, rows in enumerate(np.array_split(np.arange(len(raw)), batches)):
        batch = raw.iloc[rows]
        result = pandas_engine.clean(batch.reset_index(drop=True), known)
        cleaned.append(result.cleaned)
        quarantine.append(result.quarantine)
        absorbed = sum(len(d) for d in result.cleaned["duplicates"])
        counts = {
            "records_in": len(batch),
            "cleaned": len(result.cleaned),
            "quarantined": len(result.quarantine),
            "duplicates_collapsed": absorbed,
            "without_consent": result.without_consent,
        }
        runs.append(_run("clean", STARTED + dt.timedelta(hours=i), 1.5, counts))
    return Snapshot(
        population, pd.concat(cleaned, ignore_index=True), pd.concat(quarantine, ignore_index=True), runs
    )


def add_process_runs(snapshot: Snapshot, *, failed_first: bool = True) -> None:
    """A failed process run after the clean runs, then the one that computed the documents."""
    if failed_first:
        at = COMPUTED_AT - dt.timedelta(minutes=33)
        failed = _run("process", at, 1.0, {})
        error = RunError(cell_index=4, execution_count=4, exception="AnalysisError",
                         message="a multilevel model needs students in at least 2 schools")  # fmt: skip
        failed.finish("failed", error=error)
        failed.ended_at = at + dt.timedelta(minutes=1)
        snapshot.runs.append(failed)
    done = _run("process", COMPUTED_AT - dt.timedelta(minutes=3), 3.0, {"results": len(snapshot.processed)})
    done.run_id = PROCESS_RUN
    snapshot.runs.append(done)


def write(client: DbApiClient, snapshot: Snapshot, *, processed: bool = True) -> None:
    """The snapshot into a db-api: schools, cleaned, quarantine, runs and (unless not) processed."""
    client.write("schools", snapshot.population.schools, mode="upsert", key="school_id")
    client.write("cleaned", snapshot.cleaned, mode="upsert", key="submission_id")
    client.write("quarantine", snapshot.quarantine, mode="upsert", key="submission_id")
    for run in snapshot.runs:
        records.save(client, run)
    if processed:
        for document in snapshot.processed:
            client.put_document("processed", document.key, document.model_dump(mode="json"))


def own_documents(snapshot: Snapshot, client: DbApiClient, computed_at: dt.datetime) -> list[ResultDocument]:
    """This part's documents: distributions of the cleaned students and the quality summaries
    (read back through the db-api, as the process step would)."""
    stamp = {"run_id": PROCESS_RUN, "computed_at": computed_at}
    return [
        *distributions.distribution_documents_pandas(
            snapshot.students, schools=snapshot.population.schools, **stamp
        ),
        *quality_docs.quality_documents(client, **stamp),
    ]


def process(
    snapshot: Snapshot, client: DbApiClient, spark: SparkSession | None, computed_at: dt.datetime
) -> None:
    """The processing step's documents, analyses and dashboards' alike (`process_job.run_process`,
    which also writes them; pandas without a Spark session), into `snapshot.processed`."""
    from pipeline_lib.process.job import run_process

    report = run_process(spark, client, run_id=PROCESS_RUN, seed=0, now=computed_at)
    snapshot.processed = [*report.documents, *report.dashboard_documents]


def build_snapshot(folder: Path, students: int = 3_000, schools: int = 40, *, seed: int = 7) -> Snapshot:
    """A snapshot with every document, made on a temporary db-api by the pandas engine (which
    stores what the Spark engine stores: tests/pipeline_lib/process/test_job.py)."""
    running = start_server(SqliteStore(folder / "build.sqlite3"), "127.0.0.1:0", token=TOKEN)
    try:
        with DbApiClient(f"127.0.0.1:{running.port}", TOKEN) as client:
            snapshot = clean_in_batches(students, schools, seed=seed)
            write(client, snapshot, processed=False)
            process(snapshot, client, None, COMPUTED_AT)
            add_process_runs(snapshot)
    finally:
        running.stop(grace=1)
    return snapshot
