"""`run_clean` through a real db-api: every submission placed once, the report as the pandas engine
counts it, nothing committed by a dry run, and a driver that never holds the whole result."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from db_api.server import RunningServer
from pipeline_lib.clean import pandas_engine
from pipeline_lib.clean.summaries import changes_summary, reasons_summary
from pipeline_lib.client.sync import DbApiClient
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw

pytestmark = [pytest.mark.slow, pytest.mark.spark]

ROOT = Path(__file__).resolve().parents[3]


def _filled(client: DbApiClient, records: int) -> pd.DataFrame:
    raw = dirty_raw(records, seed=7)
    client.write("schools", SCHOOLS, mode="upsert", key="school_id")
    client.write("raw", raw, key="submission_id")
    return raw


def _expected(raw: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame, pd.DataFrame]:
    """The counts and summaries the pandas engine gives for `raw` (the engines clean identically)."""
    result = pandas_engine.clean(raw, set(SCHOOLS["school_id"]))
    cleaned, quarantine = result.cleaned, result.quarantine
    counts = {
        "records_in": len(raw),
        "cleaned": len(cleaned),
        "quarantined": len(quarantine),
        "duplicates_collapsed": int(cleaned["duplicates"].map(len).sum()),
        "conflicts_flagged": int(cleaned["duplicate_conflict"].sum()),
        "without_consent": result.without_consent,
    }
    reasons = reasons_summary(pa.table({"reasons": list(quarantine["reasons"])}), examples=True)
    changes = changes_summary(pa.table({"changes": list(cleaned["changes"])}), examples=True)
    return counts, reasons, changes


def test_a_run_places_every_submission_once_and_reports_what_pandas_counts(
    spark, sqlite_client: DbApiClient
) -> None:
    from pipeline_lib.clean.job import run_clean

    raw = _filled(sqlite_client, 3_000)
    # A batch size that divides nothing: chunks cross Arrow batches and partitions end short.
    report = run_clean(spark, sqlite_client, run_id="t", batch_size=97)
    counts, reasons, changes = _expected(raw)
    assert {name: report.counts()[name] for name in counts} == counts
    assert report.raw_deleted == len(raw) and sqlite_client.count("raw") == 0
    pd.testing.assert_frame_equal(report.reasons, reasons)
    pd.testing.assert_frame_equal(report.changes, changes)
    cleaned = sqlite_client.scan("cleaned", columns=["duplicates"]).to_pylist()
    placed = [r["_id"] for r in cleaned] + [i for r in cleaned for i in r["duplicates"] or []]
    placed += sqlite_client.scan("quarantine", columns=["_id"]).column("_id").to_pylist()
    assert len(placed) == len(set(placed)) == len(raw) - counts["without_consent"]


def test_a_dry_run_commits_nothing_and_reports_the_same(spark, sqlite_client: DbApiClient) -> None:
    from pipeline_lib.clean.job import run_clean

    raw = _filled(sqlite_client, 1_000)
    report = run_clean(spark, sqlite_client, run_id="t", dry_run=True)
    counts, reasons, changes = _expected(raw)
    assert {name: report.counts()[name] for name in counts} == counts and report.raw_deleted == 0
    assert sqlite_client.count("raw") == len(raw)
    assert sqlite_client.count("cleaned") == sqlite_client.count("quarantine") == 0
    pd.testing.assert_frame_equal(report.reasons, reasons)
    pd.testing.assert_frame_equal(report.changes, changes)


def test_a_limit_is_the_runs_whatever_the_batches_and_the_rest_stays_in_raw(
    spark, sqlite_client: DbApiClient
) -> None:
    """The scan workers commit rejects as they read: with a limit, they read and commit exactly that
    many records (one task reads it; here it ends inside the first scan batch)."""
    from pipeline_lib.clean.job import run_clean

    raw = _filled(sqlite_client, 1_000)
    report = run_clean(spark, sqlite_client, run_id="t", limit=250, batch_size=40)
    placed = report.cleaned + report.duplicates_collapsed + report.quarantined + report.without_consent
    assert report.records_in == placed == report.raw_deleted == 250
    assert sqlite_client.count("raw") == len(raw) - 250
    rest = run_clean(spark, sqlite_client, run_id="t2")
    assert rest.records_in == rest.raw_deleted == len(raw) - 250 and sqlite_client.count("raw") == 0


def test_a_run_that_lost_its_lease_commits_nothing_from_its_scan_workers(
    spark, sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    """The scan workers commit rejects with the run's fence: once another run holds the lease, the
    db-api refuses them, the run fails, and every record stays in raw for the new holder."""
    from pipeline_lib.clean.job import run_clean
    from pipeline_lib.wire.requests import Fence
    from tests.conftest import TOKEN

    raw = _filled(sqlite_client, 500)
    first = sqlite_client.acquire_lease("run:clean", "old run", 0.5)
    time.sleep(0.8)  # the old run's lease expires; a new run takes it
    assert sqlite_client.acquire_lease("run:clean", "new run", 60).generation > first.generation
    address = f"127.0.0.1:{sqlite_db_api.port}"
    stale = DbApiClient(address, TOKEN, fence=Fence("run:clean", first.generation))
    with stale, pytest.raises(Exception, match=r"generation .* is stale"):
        run_clean(spark, stale, run_id="old")
    assert sqlite_client.count("raw") == len(raw)
    assert sqlite_client.count("quarantine") == sqlite_client.count("cleaned") == 0


def test_the_last_jobs_tasks_commit_every_chunk_and_count_it(spark, sqlite_client: DbApiClient) -> None:
    """Marked records in 4 tasks, 33 a call: a dry run counts them and commits nothing; a run that
    lost its lease fails and commits nothing; then every record is committed with the
    resubmissions it absorbed, and the tallies add up."""
    import dataclasses

    from pyspark.sql.pandas.types import from_arrow_schema

    from pipeline_lib.clean.by_value import CHANGE
    from pipeline_lib.clean.counted_commit import TALLY_SCHEMA, CleanedTally, CountedCommit
    from pipeline_lib.clean.spark_commits import Committer
    from pipeline_lib.wire.requests import Fence

    ids = [f"r{i:04d}" for i in range(1_000)]
    absorbed = {i: [f"d{i:04d}"] for i in range(0, len(ids), 10)}
    raw = pd.DataFrame({"submission_id": ids + [d for ds in absorbed.values() for d in ds], "v": "x"})
    sqlite_client.write("raw", raw, key="submission_id")
    change = {"field": "ses", "rules": ["decimal_comma"], "before": "1,5", "after": "1.5"}
    records = pa.table(
        {
            "submission_id": ids,
            "duplicates": [absorbed.get(i, []) for i in range(len(ids))],
            "duplicate_conflict": [i % 7 == 0 for i in range(len(ids))],
            "changes": pa.array([[change] if i % 2 else [] for i in range(len(ids))], pa.list_(CHANGE)),
        }
    )
    frame = spark.createDataFrame(records.to_pandas(), from_arrow_schema(records.schema)).repartition(4)
    committer = Committer.of(sqlite_client, batch_size=33)

    def tally(commit: bool, by: Committer = committer) -> tuple[int, CleanedTally]:
        rows = frame.mapInArrow(CountedCommit(by, commit=commit), TALLY_SCHEMA).collect()
        return len(rows), CleanedTally.added([CleanedTally.from_json(row[0]) for row in rows])

    tasks, dry = tally(commit=False)
    assert tasks == 4 and (dry.cleaned, dry.raw_deleted) == (1_000, 0)
    assert sqlite_client.count("raw") == len(raw) and sqlite_client.count("cleaned") == 0

    old = sqlite_client.acquire_lease("run:clean", "old run", 0.5)
    time.sleep(0.8)  # the old run's lease expires; a new run takes it
    assert sqlite_client.acquire_lease("run:clean", "new run", 60).generation > old.generation
    stale = dataclasses.replace(committer, fence=Fence("run:clean", old.generation))
    with pytest.raises(Exception, match=r"generation .* is stale"):
        tally(commit=True, by=stale)
    assert sqlite_client.count("raw") == len(raw) and sqlite_client.count("cleaned") == 0

    tasks, total = tally(commit=True)
    assert (total.cleaned, total.duplicates_collapsed, total.conflicts_flagged) == (1_000, 100, 143)
    assert total.raw_deleted == len(raw) and sqlite_client.count("raw") == 0
    assert sqlite_client.count("cleaned") == len(ids)
    assert total.changes_summary().to_dict("records") == [
        {"field": "ses", "rule": "decimal_comma", "records": 500, "example": "'1,5' -> '1.5'"}
    ]


# A Spark of its own (one per process): results sent to its driver may total 1 MB, less than the
# cleaned records of this run would take as Arrow.
_SMALL_DRIVER_RUN = """
import json, sys
from pipeline_lib.clean.job import run_clean
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import Settings
from pipeline_lib.spark.session import get_spark

address, token, data_dir = sys.argv[1:4]
settings = Settings(data_dir=data_dir, db_api_address=address)
spark = get_spark("local[2]", app_name="small-driver", settings=settings,
                  conf={"spark.driver.maxResultSize": "1m"})
with DbApiClient(address, token) as client:
    report = run_clean(spark, client, run_id="small", batch_size=1000)
print(json.dumps(report.counts()))
"""


def test_the_driver_receives_no_more_than_a_batch_of_records(
    sqlite_db_api: RunningServer, sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    from tests.conftest import TOKEN

    raw = _filled(sqlite_client, 30_000)
    result = pandas_engine.clean(raw, set(SCHOOLS["school_id"]))
    # Either half collected whole would break the driver's limit.
    assert min(pa.Table.from_pandas(half).nbytes for half in (result.cleaned, result.quarantine)) > 2**20
    args = [sys.executable, "-c", _SMALL_DRIVER_RUN, sqlite_client.address, TOKEN, str(tmp_path / "var")]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    expected, _, _ = _expected(raw)
    assert {name: counts[name] for name in expected} == expected
    assert counts["raw_deleted"] == len(raw) and sqlite_client.count("raw") == 0


def _stored(client: DbApiClient) -> dict[str, dict[str, dict]]:
    """Every document of `cleaned` and `quarantine`, by id."""
    return {
        name: {doc["_id"]: doc for doc in client.scan(name).to_pylist()} for name in ("cleaned", "quarantine")
    }


def test_the_pandas_engine_stores_what_the_spark_engine_stores(
    spark, sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    from db_api.server import start_server
    from db_api.store.sqlite import SqliteStore
    from pipeline_lib.clean.job import run_clean
    from tests.conftest import TOKEN

    raw = _filled(sqlite_client, 2_000)
    by_spark = run_clean(spark, sqlite_client, run_id="spark", batch_size=97)
    other = start_server(SqliteStore(tmp_path / "other.sqlite3"), "127.0.0.1:0", token=TOKEN)
    try:
        with DbApiClient(f"127.0.0.1:{other.port}", TOKEN) as pandas_client:
            _filled(pandas_client, 2_000)
            by_pandas = run_clean(None, pandas_client, run_id="pandas", batch_size=97)
            assert by_pandas.engine == "pandas" and by_spark.engine == "spark"
            assert by_pandas.counts() == by_spark.counts()
            pd.testing.assert_frame_equal(by_pandas.reasons, by_spark.reasons)
            pd.testing.assert_frame_equal(by_pandas.changes, by_spark.changes)
            assert pandas_client.count("raw") == 0
            stored, expected = _stored(pandas_client), _stored(sqlite_client)
    finally:
        other.stop(grace=1)
    assert len(expected["cleaned"]) > 100 and len(expected["quarantine"]) > 100
    for name in ("cleaned", "quarantine"):
        assert stored[name].keys() == expected[name].keys()
        for doc_id, doc in expected[name].items():
            assert stored[name][doc_id] == doc, (name, doc_id)
    assert len(raw) == by_spark.records_in


def test_a_pandas_dry_run_commits_nothing_and_a_limit_bounds_the_read(sqlite_client: DbApiClient) -> None:
    from pipeline_lib.clean.job import run_clean

    raw = _filled(sqlite_client, 500)
    report = run_clean(None, sqlite_client, run_id="t", dry_run=True)
    counts, reasons, _ = _expected(raw)
    assert {name: report.counts()[name] for name in counts} == counts and report.raw_deleted == 0
    assert sqlite_client.count("raw") == len(raw) and sqlite_client.count("cleaned") == 0
    pd.testing.assert_frame_equal(report.reasons, reasons)
    limited = run_clean(None, sqlite_client, run_id="t2", limit=100)
    assert limited.records_in == 100 and sqlite_client.count("raw") == len(raw) - limited.raw_deleted
    assert limited.raw_deleted == 100


def test_a_pandas_run_over_an_empty_raw_reports_nothing_done(sqlite_client: DbApiClient) -> None:
    from pipeline_lib.clean.job import run_clean

    sqlite_client.write("schools", SCHOOLS, mode="upsert", key="school_id")
    report = run_clean(None, sqlite_client, run_id="empty")
    assert report.counts() == dict.fromkeys(report.counts(), 0)
    assert report.reasons.empty and report.changes.empty
