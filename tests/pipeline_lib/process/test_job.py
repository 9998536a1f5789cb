"""`run_process` against a real db-api on the embedded store, with Spark local[2]."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys
from pipeline_lib.process import job as process_job
from pipeline_lib.process.analysis import multilevel
from pipeline_lib.process.results import ResultDocument
from tests.pipeline_lib.process.analysis import simulated
from tests.pipeline_lib.process.comparable import comparable

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _fill(client: DbApiClient, n: int = 3_000, n_schools: int = 30) -> pd.DataFrame:
    students = simulated.students(n, n_schools, seed=31)
    records = simulated.cleaned_records(students)
    # One student sent twice (the later record counts), one record of a school since removed.
    twice = records.iloc[:2].assign(
        student_ref="77",
        school_id=records["school_id"].iloc[0],
        received_at=["2026-11-29T06:00:00+00:00", "2026-11-29T07:00:00+00:00"],
    )
    gone = records.iloc[2:3].assign(school_id="GONE")
    records = pd.concat([twice, gone, records.iloc[3:]], ignore_index=True)
    client.write("schools", simulated.schools(n_schools, seed=31), mode="upsert", key="school_id")
    client.write("cleaned", records, mode="upsert", key="submission_id")
    return records


def _stored(client: DbApiClient) -> dict[str, ResultDocument]:
    return {d["_id"]: ResultDocument.model_validate(d) for d in client.list_documents("processed", limit=100)}


def _run(
    spark: SparkSession, client: DbApiClient, run_id: str, **options: object
) -> process_job.ProcessReport:
    return process_job.run_process(spark, client, run_id=run_id, seed=3, **options)


def test_a_run_writes_one_valid_document_per_key_stamped_with_its_input(
    spark: SparkSession, sqlite_client: DbApiClient
) -> None:
    records = _fill(sqlite_client)
    report = _run(spark, sqlite_client, "run-a")
    stored = _stored(sqlite_client)
    # Exactly the analyses' keys, besides documents other parts add to the run (all valid).
    assert set(result_keys.ANALYSIS_KEYS) <= set(stored) and report.results_written == len(stored)
    assert report.records_in == len(records) and report.repeats_set_aside == 1 and report.without_school == 1
    assert report.students == len(records) - 2
    for key in result_keys.ANALYSIS_KEYS:
        doc = stored[key]
        assert doc == next(d for d in report.documents if d.key == key)
        assert doc.status == "ok", (key, doc.error)
        assert doc.run_id == "run-a" and doc.n_input == report.students
        assert doc.input_high_water_mark == sqlite_client.high_water_mark("cleaned") == len(records)
        assert doc.sample_size is None
    assert stored["classification:at_risk"].engine == "scikit-learn"
    assert report.counts()["results_written"] == len(stored)
    assert set(report.seconds) >= {
        "read",
        "input",
        "descriptives",
        "mixedlm school effects",
        "classification",
        "disclosure",
        "write",
    }
    # Every document carries its public protection; the audit's findings are in the report.
    assert all(doc.protection is not None and doc.protection.k == 5 for doc in stored.values())
    assert report.audit_seconds > 0 and "disclosure audit" in report.summary()
    assert set(report.withheld) == {key for key, doc in stored.items() if doc.protection.withheld}


def test_a_rerun_on_the_same_input_gives_the_same_documents(
    spark: SparkSession, sqlite_client: DbApiClient
) -> None:
    _fill(sqlite_client)
    runs = [{d.key: d for d in _run(spark, sqlite_client, f"run-{i}").documents} for i in (1, 2)]
    for key in result_keys.ANALYSIS_KEYS:
        same = [comparable(run[key], "run_id", "computed_at") for run in runs]
        assert same[0] == same[1], key


def test_the_pandas_engine_gives_the_documents_of_the_spark_engine(
    spark: SparkSession, sqlite_client: DbApiClient
) -> None:
    _fill(sqlite_client)
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    reports = {
        engine: _run(session, sqlite_client, engine, write=False, now=now)
        for engine, session in (("spark", spark), ("pandas", None))
    }
    assert reports["pandas"].engine == "pandas" and reports["spark"].engine == "spark"
    assert reports["pandas"].counts() == reports["spark"].counts()
    documents = {
        engine: {d.key: d for d in [*report.documents, *report.dashboard_documents]}
        for engine, report in reports.items()
    }
    assert documents["pandas"].keys() == documents["spark"].keys()
    assert documents["pandas"]["descriptives:overall"].engine == "pandas"
    for key, doc in documents["spark"].items():
        assert doc.status == "ok", (key, doc.error)
        same = [comparable(documents[engine][key], "run_id", "engine") for engine in ("spark", "pandas")]
        assert same[0] == same[1], key


def test_model_results_do_not_depend_on_how_spark_partitions_the_input(
    spark: SparkSession, sqlite_client: DbApiClient
) -> None:
    _fill(sqlite_client)
    runs = [{d.key: d for d in _run(spark, sqlite_client, "r", partitions=p).documents} for p in (1, 3)]
    for key in (
        "ols:math_score",
        "mixedlm:null",
        "mixedlm:school_effects",
        "classification:at_risk",
        "regression:math_score",
    ):
        same = [comparable(run[key], "computed_at") for run in runs]
        assert same[0] == same[1], key


def test_above_max_model_rows_models_use_a_sample_and_prediction_runs_on_mllib(
    spark: SparkSession, sqlite_client: DbApiClient
) -> None:
    _fill(sqlite_client, n=2_000, n_schools=20)
    report = _run(spark, sqlite_client, "run-big", max_model_rows=800)
    docs = {d.key: d for d in report.documents}
    assert report.sample_size == 800 and report.model_engine == "spark-mllib"
    for key in ("ols:math_score", "mixedlm:null", "mixedlm:school_effects"):
        assert docs[key].sample_size == 800 and docs[key].engine == "statsmodels"
    assert "800" in docs["ols:math_score"].summary  # the n of the fit
    for key in ("classification:at_risk", "regression:math_score"):
        assert docs[key].engine == "spark-mllib" and docs[key].sample_size is None, docs[key].error
        assert docs[key].parameters["n"] == report.students
    assert docs["descriptives:overall"].sample_size is None
    assert all(d.status == "ok" for d in report.documents)


def test_a_model_that_does_not_converge_is_stored_as_a_failure(
    spark: SparkSession, sqlite_client: DbApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(sqlite_client, n=1_500, n_schools=15)
    monkeypatch.setattr(multilevel, "MAXITER", dict.fromkeys(multilevel.OPTIMIZERS, 1))
    _run(spark, sqlite_client, "run-fail")
    stored = _stored(sqlite_client)
    for key in ("mixedlm:null", "mixedlm:school_effects"):
        doc = stored[key]
        assert doc.status == "failed" and "no optimizer gave a usable REML fit" in (doc.error or "")
        assert [t.name for t in doc.tables] == ["attempts"]
    assert stored["ols:math_score"].status == "ok"


def test_with_nothing_cleaned_every_key_says_so(spark: SparkSession, sqlite_client: DbApiClient) -> None:
    sqlite_client.write("schools", simulated.schools(3), mode="upsert", key="school_id")
    report = _run(spark, sqlite_client, "run-empty", now=dt.datetime(2026, 11, 29, tzinfo=dt.UTC))
    stored = _stored(sqlite_client)
    assert set(result_keys.ANALYSIS_KEYS) <= set(stored) and report.records_in == 0
    for key in result_keys.ANALYSIS_KEYS:
        assert stored[key].status == "failed" and "no cleaned students" in (stored[key].error or "")
    assert report.results_failed == len(result_keys.ANALYSIS_KEYS)
