"""The `workbench` data source on a real standalone cluster: a master and a worker started from
the pip-installed PySpark on loopback, so reads and writes run in separate executor processes
(which import the source from the installed package, with PYSPARK_PYTHON = this interpreter).

The driver runs in a fresh (spawned) process: one Python process holds one SparkContext, and the
test session may already hold a local one.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from tests.conftest import TOKEN
from tests.spark_cluster import Cluster, standalone_cluster
from tests.wire_servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A standalone master and one worker (2 cores, 1 GB) on 127.0.0.1, stopped afterwards."""
    # What the executors would find if they read settings of their own: all wrong. They must use
    # only what the driver puts in the data source's options.
    wrong = {
        "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{free_port()}",
        "WORKBENCH_DB_API_TOKEN": "not-the-token",
        "WORKBENCH_DATA_DIR": "var",
    }
    with standalone_cluster(tmp_path / "spark", env=wrong) as running:
        yield running
    assert running.master.process.returncode is not None
    assert all(worker.process.returncode is not None for worker in running.workers)


def drive(master: str, db_api_address: str, data_dir: str) -> dict:
    """The driver program (in a spawned process): read raw, write cleaned, through the cluster."""
    try:
        from pyspark.sql import functions as F

        from pipeline_lib.settings import Settings
        from pipeline_lib.spark.session import get_spark

        # The token from the driver's data directory, as on a machine with default settings.
        settings = Settings(data_dir=Path(data_dir), db_api_address=db_api_address)
        conf = {"spark.executor.memory": "1g", "spark.cores.max": "2"}
        spark = get_spark(master, app_name="workbench-cluster-test", settings=settings, conf=conf)
        try:
            raw = spark.read.format("workbench").option("collection", "raw").option("partitions", "4").load()
            partitions = raw.rdd.getNumPartitions()
            cleaned = raw.select(
                F.col("_id").alias("submission_id"),
                F.trim(F.col("ses")).try_cast("int").alias("ses"),
                F.current_timestamp().alias("cleaned_at"),
            )
            cleaned.write.format("workbench").option("collection", "cleaned").option(
                "key", "submission_id"
            ).mode("append").save()
            again = spark.read.format("workbench").option("collection", "cleaned").load()
            executors = spark.sparkContext._jsc.sc().getExecutorIds().size()
            return {
                "master": spark.sparkContext.master,
                "partitions": partitions,
                "raw_rows": raw.count(),
                "cleaned_rows": again.count(),
                "cleaned_types": {f.name: f.dataType.simpleString() for f in again.schema.fields},
                "executors": executors,
                "driver_pid": os.getpid(),
            }
        finally:
            spark.stop()
    except Exception:  # Py4J and Spark exceptions do not pickle: send the text
        raise RuntimeError(traceback.format_exc()) from None


def test_the_data_source_reads_and_writes_on_a_standalone_cluster(
    cluster: Cluster, sqlite_db_api: RunningServer, sqlite_client: DbApiClient, tmp_path: Path
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db_api_token").write_text(TOKEN + "\n")
    ids = [f"r{i:05d}" for i in range(6000)]
    sqlite_client.write("raw", pa.table({"_id": ids, "ses": [f" {i % 9} " for i in range(6000)]}))

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result = pool.apply(drive, (cluster.master_url, f"127.0.0.1:{sqlite_db_api.port}", str(tmp_path)))

    assert result["master"] == cluster.master_url
    assert result["partitions"] == 4
    assert result["raw_rows"] == result["cleaned_rows"] == 6000
    assert result["cleaned_types"]["ses"] == "bigint" and result["cleaned_types"]["cleaned_at"] == "timestamp"
    assert result["executors"] >= 1
    # The tasks ran in executor processes the worker launched (their logs are in its work dir).
    executor_logs = list(cluster.work_dir.glob("app-*/*/stderr"))
    assert executor_logs, "the worker launched no executor"
    stored = sqlite_client.scan("cleaned", columns=["submission_id", "ses"]).to_pandas()
    assert sorted(stored["submission_id"]) == ids
    assert (stored["ses"] == stored["submission_id"].str[1:].astype(int) % 9).all()
    state = cluster.state()
    assert [app["name"] for app in state.get("completedapps", [])] == ["workbench-cluster-test"]
