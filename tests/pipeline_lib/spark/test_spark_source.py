"""The `workbench` Spark data source against a real db-api, on one local[2] session."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from db_api.server import RunningServer, start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import Settings
from pipeline_lib.spark.session import get_spark, local_cores, spark_conf
from pipeline_lib.spark.source import (
    DEFAULT_READ_BATCH,
    ScanPartition,
    SourceOptions,
    WorkbenchReader,
    register,
)
from pipeline_lib.spark.source import read as job_read
from tests.certificates import CertificateAuthority
from tests.conftest import TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.spark]

BASE = datetime(2024, 3, 1, 8, 30, tzinfo=UTC)


def address(db_api: RunningServer) -> str:
    return f"127.0.0.1:{db_api.port}"


def read(spark: SparkSession, db_api: RunningServer, collection: str, **options: object) -> DataFrame:
    reader = spark.read.format("workbench").option("address", address(db_api)).option("token", TOKEN)
    for name, value in options.items():
        reader = reader.option(name, str(value))
    return reader.option("collection", collection).load()


def typed(n: int, start: int = 0) -> pa.Table:
    rows = range(start, start + n)
    return pa.table(
        {
            "submission_id": [f"s{i:05d}" for i in rows],
            "school": pa.array([None if i % 11 == 0 else f"SCH{i % 7:03d}" for i in rows], pa.string()),
            "score": [i / 4 for i in rows],
            "age": pa.array([10 + i % 9 for i in rows], pa.int64()),
            "consent": [i % 2 == 0 for i in rows],
            "received_at": pa.array(
                [BASE + timedelta(milliseconds=137 * i) for i in rows], pa.timestamp("ms", tz="UTC")
            ),
        }
    )


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted by `_id` (or the first column), with timestamps as naive UTC microseconds."""
    frame = frame.copy()
    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(frame[name]):
            frame[name] = frame[name].astype("datetime64[us]")
        elif pd.api.types.is_string_dtype(frame[name]):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    by = "_id" if "_id" in frame.columns else frame.columns[0]
    return frame.sort_values(by).reset_index(drop=True)


def test_raw_reads_as_text_and_equals_a_client_scan(
    spark: SparkSession, sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    # As submitted: numbers in some documents, text in others, a field nobody filled in.
    even, odd = range(0, 1500, 2), range(1, 1500, 2)
    numbers = pa.table({"_id": [f"r{i:04d}" for i in even], "ses": list(even), "score": [2.5] * len(even)})
    texts = pa.table(
        {
            "_id": [f"r{i:04d}" for i in odd],
            "ses": [f" {i}%" for i in odd],
            "score": ["1,5"] * len(odd),
            "note": pa.nulls(len(odd), pa.string()),
        }
    )
    sqlite_client.write("raw", [numbers, texts], batch_size=400)

    frame = read(spark, sqlite_db_api, "raw")

    assert all(isinstance(field.dataType, T.StringType) for field in frame.schema.fields)
    expected = sqlite_client.scan_pandas("raw", arrow_strings=False)
    pd.testing.assert_frame_equal(comparable(frame.toPandas()), comparable(expected))
    assert frame.filter(F.col("_id") == "r0003").first()["ses"] == " 3%"
    assert frame.filter(F.col("_id") == "r0004").first().asDict() == {
        "_id": "r0004",
        "ses": "4",
        "score": "2.5",
        "note": None,
    }


def test_a_typed_collection_reads_with_its_types_and_equals_a_client_scan(
    spark: SparkSession, sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    sqlite_client.write("cleaned", typed(2500), mode="upsert", key="submission_id", batch_size=1000)

    frame = read(spark, sqlite_db_api, "cleaned", partitions=3, batch_size=700)

    types = {field.name: field.dataType for field in frame.schema.fields}
    assert types == {
        "_id": T.StringType(),
        "submission_id": T.StringType(),
        "school": T.StringType(),
        "score": T.DoubleType(),
        "age": T.LongType(),
        "consent": T.BooleanType(),
        "received_at": T.TimestampType(),
    }
    expected = sqlite_client.scan_pandas("cleaned", arrow_strings=False)
    pd.testing.assert_frame_equal(comparable(frame.toPandas()), comparable(expected))
    # The instant survives: the session runs in UTC and the db-api keeps milliseconds.
    first = frame.filter(F.col("_id") == "s00001").first()
    assert first["received_at"] == (BASE + timedelta(milliseconds=137)).replace(tzinfo=None)


@pytest.mark.parametrize("partitions", [1, 4])
def test_n_partitions_make_n_spark_partitions_with_every_record_once(
    spark: SparkSession, sqlite_db_api: RunningServer, sqlite_client: DbApiClient, partitions: int
) -> None:
    sqlite_client.write("cleaned", typed(2000), mode="upsert", key="submission_id")

    frame = read(spark, sqlite_db_api, "cleaned", partitions=partitions, batch_size=300)

    assert frame.rdd.getNumPartitions() == partitions
    per_partition = frame.groupBy(F.spark_partition_id().alias("p")).count().toPandas()
    assert sorted(per_partition["p"]) == list(range(partitions))  # every partition holds records
    ids = [row["_id"] for row in frame.select("_id").collect()]
    assert sorted(ids) == [f"s{i:05d}" for i in range(2000)]


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_jobs_read_equals_a_client_scan_in_its_partitions(
    spark: SparkSession, sqlite_client: DbApiClient, partitions: int
) -> None:
    """`read`, what the clean and process jobs read with: the same records and types as the
    `workbench` format, one Spark partition per db-api partition, a schema inferred or given."""
    sqlite_client.write("cleaned", typed(2500), mode="upsert", key="submission_id", batch_size=1000)

    inferred = job_read(spark, sqlite_client, "cleaned", partitions=partitions)
    given = T.StructType(
        [T.StructField("received_at", T.TimestampType()), T.StructField("submission_id", T.StringType())]
    )
    picked = job_read(spark, sqlite_client, "cleaned", given, partitions=partitions)

    assert {f.name: f.dataType for f in inferred.schema.fields}["received_at"] == T.TimestampType()
    expected = sqlite_client.scan_pandas("cleaned", arrow_strings=False)
    pd.testing.assert_frame_equal(comparable(inferred.toPandas()), comparable(expected))
    assert inferred.rdd.getNumPartitions() == partitions
    per_partition = inferred.groupBy(F.spark_partition_id().alias("p")).count().toPandas()
    assert sorted(per_partition["p"]) == list(range(partitions))  # every partition holds records
    assert picked.columns == ["received_at", "submission_id"]
    first = picked.filter(F.col("submission_id") == "s00001").first()
    assert first is not None and first["received_at"] == (BASE + timedelta(milliseconds=137)).replace(
        tzinfo=None
    )
    assert picked.count() == 2500


def test_reads_come_in_batches_of_the_read_default_unless_asked(tmp_path: Path) -> None:
    # Spark's per-batch costs make the service's default (2,000 rows) a slow way to read. A db-api
    # of the default message size: a smaller one cuts its replies to fit.
    db_api = start_server(SqliteStore(tmp_path / "store.sqlite3"), "127.0.0.1:0", token=TOKEN)
    rows = DEFAULT_READ_BATCH * 2 + 500
    options = {"collection": "cleaned", "address": address(db_api), "token": TOKEN}
    schema = T.StructType([T.StructField("submission_id", T.StringType())])

    def batch_rows(**more: str) -> list[int]:
        reader = WorkbenchReader(SourceOptions.parse(options | more), schema)
        return [batch.num_rows for batch in reader.read(ScanPartition(0, 1))]

    try:
        with DbApiClient(address(db_api), TOKEN) as client:
            client.write("cleaned", typed(rows), mode="upsert", key="submission_id")
        assert batch_rows() == [DEFAULT_READ_BATCH, DEFAULT_READ_BATCH, 500]
        assert batch_rows(batch_size="15000") == [15000, 15000, rows - 30000]
    finally:
        db_api.stop(grace=1)


def test_a_given_schema_picks_orders_and_casts_the_columns(
    spark: SparkSession, sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    sqlite_client.write("cleaned", typed(1200), mode="upsert", key="submission_id")
    schema = "submission_id string, age int, received_at timestamp, score double, absent string"

    frame = (
        spark.read.format("workbench")
        .schema(schema)
        .options(collection="cleaned", address=address(sqlite_db_api), token=TOKEN, partitions="2")
        .load()
    )

    assert frame.columns == ["submission_id", "age", "received_at", "score", "absent"]
    assert frame.schema["age"].dataType == T.IntegerType()
    got = comparable(frame.toPandas())
    assert got["absent"].isna().all()
    expected = comparable(typed(1200).to_pandas())
    pd.testing.assert_frame_equal(
        got[["submission_id", "age", "received_at", "score"]],
        expected[["submission_id", "age", "received_at", "score"]],
        check_dtype=False,
    )


def test_writing_upserts_by_key_and_the_client_reads_it_back(
    spark: SparkSession, sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    first = spark.createDataFrame(typed(3000).to_pandas()).repartition(3)

    def write(frame: DataFrame) -> None:
        (
            frame.write.format("workbench")
            .option("address", address(sqlite_db_api))
            .option("token", TOKEN)
            .option("collection", "cleaned")
            .option("key", "submission_id")
            .option("batch_size", "700")
            .mode("append")
            .save()
        )

    write(first)
    # Rerun over an overlapping range with changed scores: records are replaced, never doubled.
    write(spark.createDataFrame(typed(1000, start=2500).to_pandas()).withColumn("score", F.lit(-1.0)))

    stored = sqlite_client.scan_pandas("cleaned", arrow_strings=False)
    assert len(stored) == 3500
    assert stored["_id"].tolist() == stored["submission_id"].tolist()
    stored = stored.set_index("submission_id").sort_index()
    assert (stored.loc["s02500":, "score"] == -1.0).all()
    assert stored.loc["s00004", "score"] == 1.0
    assert stored.loc["s00007", "received_at"] == pd.Timestamp(BASE + timedelta(milliseconds=137 * 7))
    assert stored.loc["s00011", "school"] is None


def test_nested_columns_round_trip(
    spark: SparkSession, sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    schema = (
        "submission_id string, reasons array<string>, "
        "changes array<struct<field: string, rules: array<string>, at: timestamp>>"
    )
    at = datetime(2024, 5, 6, 7, 8, 9, 123000)  # the session time zone is UTC
    rows = [
        ("q1", ["range", "unknown_school"], [("ses", ["trim", "decimal_comma"], at)]),
        ("q2", [], []),
        ("q3", None, None),
    ]
    frame = spark.createDataFrame(rows, schema)
    frame.write.format("workbench").options(
        collection="quarantine", key="submission_id", address=address(sqlite_db_api), token=TOKEN
    ).mode("append").save()

    stored = {doc["_id"]: doc for doc in sqlite_client.scan("quarantine").to_pylist()}
    assert stored["q1"]["changes"][0]["at"] == at  # the client labels only top-level dates UTC
    back = read(spark, sqlite_db_api, "quarantine").orderBy("_id")
    assert back.schema["changes"].dataType == T.ArrayType(
        T.StructType(
            [
                T.StructField("field", T.StringType()),
                T.StructField("rules", T.ArrayType(T.StringType())),
                T.StructField("at", T.TimestampType()),
            ]
        )
    )
    got = [(r["submission_id"], r["reasons"], r["changes"]) for r in back.collect()]
    assert got[0] == (
        "q1",
        ["range", "unknown_school"],
        [Row(field="ses", rules=["trim", "decimal_comma"], at=at)],
    )
    assert got[1][1:] == ([], []) and got[2][1:] == (None, None)


def test_an_empty_collection_reads_as_an_empty_dataframe(
    spark: SparkSession, sqlite_db_api: RunningServer
) -> None:
    inferred = read(spark, sqlite_db_api, "quarantine")
    assert inferred.columns == ["_id"]
    assert inferred.count() == 0
    assert inferred.toPandas().empty

    given = (
        spark.read.format("workbench")
        .schema("submission_id string, reasons array<string>")
        .options(collection="quarantine", address=address(sqlite_db_api), token=TOKEN)
        .load()
    )
    assert given.count() == 0
    assert given.columns == ["submission_id", "reasons"]

    by_path = spark.read.format("workbench").options(address=address(sqlite_db_api), token=TOKEN)
    assert by_path.load("quarantine").count() == 0


def test_an_empty_dataframe_writes_nothing(
    spark: SparkSession, sqlite_db_api: RunningServer, sqlite_client: DbApiClient
) -> None:
    empty = spark.createDataFrame([], "submission_id string, score double")
    (
        empty.write.format("workbench")
        .options(collection="cleaned", key="submission_id", address=address(sqlite_db_api), token=TOKEN)
        .mode("append")
        .save()
    )
    assert sqlite_client.count("cleaned") == 0


def test_bad_options_fail_clearly_before_any_task_runs(
    spark: SparkSession, sqlite_db_api: RunningServer
) -> None:
    with pytest.raises(AnalysisException, match=r"unknown collection 'nope'; the db-api serves: cleaned"):
        read(spark, sqlite_db_api, "nope")
    with pytest.raises(AnalysisException, match=r"needs \.option\(\"collection\", NAME\)"):
        spark.read.format("workbench").option("address", address(sqlite_db_api)).load()
    with pytest.raises(AnalysisException, match=r"unknown option\(s\) \['colums'\]"):
        read(spark, sqlite_db_api, "raw", colums="a")
    with pytest.raises(AnalysisException, match=r"column_types must be one of"):
        read(spark, sqlite_db_api, "raw", column_types="numbers")

    frame = spark.createDataFrame([("a", 1.0)], "submission_id string, score double")
    writer = frame.write.format("workbench").option("address", address(sqlite_db_api))
    with pytest.raises(AnalysisException, match=r"unknown collection 'clean'"):
        writer.option("collection", "clean").mode("append").save()
    with pytest.raises(AnalysisException, match=r"cannot overwrite a collection"):
        writer.option("collection", "cleaned").mode("overwrite").save()
    with pytest.raises(AnalysisException, match=r'mode "upsert" needs \.option\("key", FIELD\)'):
        writer.option("collection", "cleaned").option("mode", "upsert").mode("append").save()


def test_a_wrong_token_fails_with_the_db_api_message(
    spark: SparkSession, sqlite_db_api: RunningServer
) -> None:
    reader = spark.read.format("workbench").schema("_id string")
    reader = reader.options(collection="raw", address=address(sqlite_db_api), token="wrong")
    with pytest.raises(Exception, match=r"UNAUTHENTICATED"):
        reader.load().collect()


def test_defaults_come_from_the_settings_given_to_get_spark(
    spark: SparkSession, sqlite_db_api: RunningServer, sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    sqlite_client.write("cleaned", typed(500), mode="upsert", key="submission_id")
    settings = Settings(data_dir=tmp_path, db_api_address=address(sqlite_db_api), db_api_token=TOKEN)
    try:
        assert get_spark("local[2]", settings=settings) is spark  # the running session, re-registered
        frame = spark.read.format("workbench").option("collection", "cleaned").load()
        assert frame.rdd.getNumPartitions() == spark.sparkContext.defaultParallelism == 2
        assert frame.count() == 500
        with pytest.raises(RuntimeError, match=r"already running"):
            get_spark("local[1]", settings=settings)
    finally:
        register(spark, Settings(data_dir=tmp_path, db_api_address="127.0.0.1:9"))


def test_the_session_is_set_up_for_this_machine(spark: SparkSession, tmp_path: Path) -> None:
    conf = spark.sparkContext.getConf()
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
    # No call site recorded per column function (JVM round trips that slowed building the clean).
    from pyspark.errors.utils import is_debugging_enabled

    assert spark.conf.get("spark.python.sql.dataFrameDebugging.enabled") == "false"
    assert not is_debugging_enabled()
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert Path(os.environ["PYSPARK_PYTHON"]).name.startswith("python")
    assert local_cores("local[*]") == os.cpu_count() and local_cores("local") == 1
    assert local_cores("spark://h:7077") is None
    remote = spark_conf("spark://10.1.2.3:7077", settings=Settings(data_dir=tmp_path))
    assert "spark.driver.host" not in remote and "spark.sql.shuffle.partitions" not in remote
    assert spark_conf("spark://127.0.0.1:7077", settings=Settings(data_dir=tmp_path))["spark.driver.host"]
    # The JVM of one run compiles with C1 only (C2's compiling cost it more than it saved).
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert "-XX:TieredStopAtLevel=1" in list(runtime.getInputArguments())


def test_executors_read_a_mutual_tls_db_api_with_the_pem_from_the_drivers_settings(
    spark: SparkSession, tmp_path: Path
) -> None:
    pki = CertificateAuthority(tmp_path / "pki")
    server, client = pki.issue("db-api", server=True), pki.issue("run", server=False)
    store = SqliteStore(tmp_path / "tls.sqlite3")
    running = start_server(
        store, "127.0.0.1:0", token=TOKEN, tls_cert=server.cert, tls_key=server.key, tls_client_ca=pki.pem
    )
    settings = Settings(
        data_dir=tmp_path,
        db_api_address=address(running),
        db_api_token=TOKEN,
        db_api_tls_ca=pki.pem,
        db_api_tls_client_cert=client.cert,
        db_api_tls_client_key=client.key,
    )
    try:
        with DbApiClient.from_settings(settings) as writer:
            writer.write("cleaned", typed(300), mode="upsert", key="submission_id")
        register(spark, settings)
        frame = spark.read.format("workbench").option("collection", "cleaned").option("partitions", 2).load()
        assert frame.count() == 300
        with DbApiClient.from_settings(settings) as reader:  # a job's read carries its client's PEM
            assert job_read(spark, reader, "cleaned", partitions=2).count() == 300
    finally:
        register(spark, Settings(data_dir=tmp_path, db_api_address="127.0.0.1:9"))
        running.stop(grace=0)
