"""The `workbench` data source on a real standalone cluster: a master and a worker started from
the pip-installed PySpark on loopback, so reads and writes run in separate executor processes
(which import the source from the installed package, with PYSPARK_PYTHON = this interpreter).

The driver runs in a fresh (spawned) process: one Python process holds one SparkContext, and the
test session may already hold a local one.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyspark
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from tests.conftest import TOKEN
from tests.wire_servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.spark]

SPARK_HOME = Path(pyspark.__file__).parent
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM (the worker then stops its executors), SIGKILL to the group if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Anything it started and left behind: its own process group, by its id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class Cluster:
    master_url: str
    ui_url: str
    work_dir: Path


def _start(name: str, cls: str, args: list[str], directory: Path, env: dict[str, str]) -> Daemon:
    log = directory / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), cls, *args],
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() can end all of it
        )
    return Daemon(name, process, log)


def _master_state(ui_url: str) -> dict:
    with urllib.request.urlopen(f"{ui_url}/json/", timeout=2) as reply:
        return json.load(reply)


def _wait_for_worker(ui_url: str, daemons: list[Daemon]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for daemon in daemons:
            if daemon.process.poll() is not None:
                raise RuntimeError(f"the {daemon.name} exited early:\n{daemon.log.read_text()[-4000:]}")
        try:
            state = _master_state(ui_url)
            if any(w.get("state") == "ALIVE" and w.get("cores") == 2 for w in state.get("workers", [])):
                return
        except OSError:
            pass
        time.sleep(0.5)
    logs = "\n".join(f"--- {d.name}\n{d.log.read_text()[-3000:]}" for d in daemons)
    raise TimeoutError(f"no worker registered with the master in {START_TIMEOUT:.0f} s\n{logs}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A standalone master and one worker (2 cores, 1 GB) on 127.0.0.1, stopped afterwards."""
    port, ui_port, worker_ui_port = free_port(), free_port(), free_port()
    work_dir = tmp_path / "work"
    for directory in (work_dir, tmp_path / "worker-local", tmp_path / "logs"):
        directory.mkdir()
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(tmp_path / "worker-local"),
        "SPARK_LOG_DIR": str(tmp_path / "logs"),
        "PYSPARK_PYTHON": sys.executable,
        # What the executors would find if they read settings of their own: all wrong. They must
        # use only what the driver puts in the data source's options.
        "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{free_port()}",
        "WORKBENCH_DB_API_TOKEN": "not-the-token",
        "WORKBENCH_DATA_DIR": "var",
    }
    daemons: list[Daemon] = []
    try:
        daemons.append(
            _start(
                "master",
                "org.apache.spark.deploy.master.Master",
                ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)],
                tmp_path,
                env,
            )
        )
        master_url = f"spark://127.0.0.1:{port}"
        worker_args = ["--host", "127.0.0.1", "--cores", "2", "--memory", "1g"]
        worker_args += ["--work-dir", str(work_dir), "--webui-port", str(worker_ui_port), master_url]
        daemons.append(_start("worker", "org.apache.spark.deploy.worker.Worker", worker_args, tmp_path, env))
        ui_url = f"http://127.0.0.1:{ui_port}"
        _wait_for_worker(ui_url, daemons)
        yield Cluster(master_url, ui_url, work_dir)
    finally:
        for daemon in reversed(daemons):  # the worker first, then the master
            daemon.stop()
    for daemon in daemons:
        assert daemon.process.returncode is not None


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
    state = _master_state(cluster.ui_url)
    assert [app["name"] for app in state.get("completedapps", [])] == ["workbench-cluster-test"]
