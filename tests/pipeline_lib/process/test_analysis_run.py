"""An analysis notebook's run (`AnalysisRun`) through a real db-api on the embedded store and Spark:
it reads the students the process run analyses, publishes under its own keys with disclosure
control (groups under k hidden, joint protection with what is already public, documents held
whole between runs), removes keys it no longer publishes, and fails for a broken specification
after storing why."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyspark.sql import SparkSession

from db_api.server import start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import CLEANED, PROCESSED, RELEASES, SCHOOLS
from pipeline_lib.process import job as process_job
from pipeline_lib.process.analysis.base import SpecificationError
from pipeline_lib.process.analysis_run import AnalysisNameError, AnalysisRun, release_id
from pipeline_lib.process.results import ResultDocument, suppress
from tests.conftest import TOKEN
from tests.pipeline_lib.process.analysis import simulated

pytestmark = [pytest.mark.slow, pytest.mark.spark]

N_SCHOOLS = 12


@pytest.fixture(scope="module")
def processed_store(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbApiClient]:
    """One db-api on the embedded store for the module, with students and the process run's
    documents (one school has three students)."""
    path = tmp_path_factory.mktemp("analysis-run") / "store.sqlite3"
    running = start_server(SqliteStore(path), "127.0.0.1:0", token=TOKEN, max_message_bytes=4 * 1024 * 1024)
    with DbApiClient(f"127.0.0.1:{running.port}", TOKEN, max_message_bytes=64 * 1024 * 1024) as client:
        _fill(spark, client)
        yield client
    running.stop(grace=1)


def _fill(spark: SparkSession, sqlite_client: DbApiClient) -> None:
    students = simulated.students(1_200, N_SCHOOLS, seed=5)
    tiny = students["school_id"] == students["school_id"].iloc[0]
    students = students[~tiny | (tiny.cumsum() <= 3)]
    sqlite_client.write(SCHOOLS, simulated.schools(N_SCHOOLS, seed=5), mode="upsert", key="school_id")
    sqlite_client.write(CLEANED, simulated.cleaned_records(students), mode="upsert", key="submission_id")
    process_job.run_process(spark, sqlite_client, run_id="process-1", seed=3)


def _stored(client: DbApiClient, prefix: str) -> dict[str, ResultDocument]:
    docs = client.list_documents(PROCESSED, limit=1_000)
    return {
        d["_id"]: ResultDocument.model_validate({k: v for k, v in d.items() if k != "_id"})
        for d in docs
        if d["_id"].startswith(prefix)
    }


def _by(students: Any, column: str) -> Any:
    return (
        students.groupby(column, observed=True)
        .agg(n=("math_score", "count"), mean_math=("math_score", "mean"))
        .reset_index()
        .astype({column: str})
    )


def test_an_analysis_publishes_under_its_keys_with_small_groups_hidden(
    spark: SparkSession, processed_store: DbApiClient
) -> None:
    client = processed_store
    before = _stored(client, "")
    run = AnalysisRun.start(spark, client, name="reading", run_id="reading-1", k_min_group=5, seed=3)
    assert len(run.students) == run.report.students > 0
    run.publish_table(
        _by(run.students, "sector"), key="reading:by_sector", title="By sector", labels=["sector"]
    )
    run.publish_table(
        _by(run.students, "school_id"), key="reading:by_school", title="By school", labels=["school_id"]
    )
    run.publish(run.fit_ols("math_score ~ ses + C(sector)"), key="reading:ols", title="OLS")
    report = run.finish()
    report.check_specification()

    stored = _stored(client, "reading:")
    assert set(stored) == {"reading:by_sector", "reading:by_school", "reading:ols"}
    assert all(d.run_id == "reading-1" and d.protection is not None for d in stored.values())
    by_sector = suppress(stored["reading:by_sector"], k=5)
    assert by_sector.withheld is None and not any(by_sector.tables[0].suppressed)
    by_school = suppress(stored["reading:by_school"], k=5)
    assert by_school.withheld is None
    exact = stored["reading:by_school"].tables[0]
    n = exact.columns.index("n")
    tiny = [i for i, row in enumerate(exact.rows) if row[n] == 3]
    assert len(tiny) == 1  # the school of three: hidden, and at least one other beside it
    public = by_school.tables[0]
    assert public.suppressed[tiny[0]] and public.rows[tiny[0]][n] is None and sum(public.suppressed) >= 2
    assert all(row[n] is None or row[n] >= 5 for row in public.rows)
    # The documents already public are untouched; the notebook's release keeps its public versions.
    assert {k: d for k, d in _stored(client, "").items() if not k.startswith("reading:")} == before
    kept = client.get_document(RELEASES, release_id("reading"))
    assert kept is not None and {d["key"] for d in kept["documents"]} >= {"reading:by_sector", "reading:ols"}


def test_a_rerun_holds_its_documents_and_removes_the_keys_it_no_longer_publishes(
    spark: SparkSession, processed_store: DbApiClient
) -> None:
    client = processed_store
    first = AnalysisRun.start(spark, client, name="again", run_id="again-1", k_min_group=5, seed=3)
    first.publish_table(_by(first.students, "sex"), key="again:by_sex", title="By sex", labels=["sex"])
    first.publish_table(
        _by(first.students, "sector"), key="again:by_sector", title="By sector", labels=["sector"]
    )
    first.finish()
    second = AnalysisRun.start(spark, client, name="again", run_id="again-2", k_min_group=5, seed=3)
    shifted = _by(second.students, "sex").assign(mean_math=lambda f: f["mean_math"] + 1)
    second.publish_table(shifted, key="again:by_sex", title="By sex", labels=["sex"])
    second.finish()

    stored = _stored(client, "again:")
    assert set(stored) == {"again:by_sex"}  # by_sector is no longer published: removed
    doc = stored["again:by_sex"]
    assert doc.run_id == "again-2"
    public = suppress(doc, k=5)
    # No student changed: public views show the first run's figures, not the shifted ones.
    assert public.run_id == "again-1" and public.not_updated


def test_bad_publications_are_refused_with_the_reason(
    spark: SparkSession, processed_store: DbApiClient
) -> None:
    with pytest.raises(AnalysisNameError, match="taken by the pipeline"):
        AnalysisRun.start(spark, processed_store, name="descriptives", run_id="x")
    run = AnalysisRun.start(spark, processed_store, name="bad", run_id="bad-1", k_min_group=5)
    table = _by(run.students, "sector")
    with pytest.raises(ValueError, match="publishes under bad:<what>"):
        run.publish_table(table, key="ols:math_score", title="t")
    with pytest.raises(ValueError, match="no column 'n' counting each row's students"):
        run.publish_table(table.drop(columns="n"), key="bad:t", title="t")
    with pytest.raises(ValueError, match="whole numbers of students"):
        run.publish_table(table.assign(n=0.5), key="bad:t", title="t")
    run.publish(run.fit_ols("math_score ~ shoe_size"), key="bad:ols", title="Broken")
    report = run.finish()
    stored = _stored(processed_store, "bad:")["bad:ols"]
    assert stored.status == "failed" and "shoe_size" in (stored.error or "")
    with pytest.raises(
        SpecificationError, match="bad:ols: the formula 'math_score ~ shoe_size' names 'shoe_size'"
    ):
        report.check_specification()
