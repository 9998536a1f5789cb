"""`run_clean` through a real db-api: every submission placed once, the report as the pandas engine
counts it, nothing committed by a dry run, and a driver that never holds the whole result."""

from __future__ import annotations

import json
import subprocess
import sys
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
