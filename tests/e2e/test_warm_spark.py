"""The warm Spark (issue 18): `workbench up` with WORKBENCH_WARM_SPARK=true keeps a Spark Connect server
on loopback, and runs that need Spark attach to it instead of starting a JVM of their own.

One system for the module: `workbench up` on free ports with the warm Spark on; demo students
through the REST API; `workbench run clean` and `process` with `-p engine spark`, as a user forces
Spark on a small data set. The server has warmed up (its Python workers started) before a run
attaches. The clean's stored documents equal the pandas engine's on the same submissions (a second
db-api of the test's own), and no run started a driver JVM of its own (each such start writes a
heading to `<data dir>/logs/spark.log`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from db_api.server import start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.parent_watch import command_line
from pipeline_lib.spark import class_archive, daemon_zygote, python_daemon, warm_up
from tests.conftest import TOKEN
from tests.e2e.running_system import System, quiet_system_env, workbench_up
from tests.processes import descendants, non_loopback_ipv4, refuses, wait_for
from tests.wire_servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.spark]

STUDENTS = 400
OWN_DRIVER = "Spark driver of"  # the heading get_spark writes to spark.log when it starts a JVM
ARCHIVE_BUILD = f"'{class_archive.APP_NAME}'"  # in the headings of the archive build's sessions


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("warm")
    # The scheduler stays out of the test's runs.
    env, web = quiet_system_env(
        root, spark_master="local[2]", warm_spark="true", spark_connect_port=str(free_port())
    )
    log = root / "up.log"
    with workbench_up(env, log, timeout=180):
        yield System(env, web, root / "var", log)


def _attach(url: str, token: str | None) -> subprocess.CompletedProcess:
    """A Spark Connect client in a process of its own (Connect mode is process-wide in PySpark)."""
    code = (
        "from pyspark.sql import SparkSession\n"
        f"spark = SparkSession.builder.remote({url!r}).getOrCreate()\n"
        "print(spark.range(7).count())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CONNECT_AUTHENTICATE_TOKEN"}
    if token is not None:
        env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_up_serves_the_warm_spark_on_loopback_to_holders_of_its_token(system: System) -> None:
    port = int(system.env["WORKBENCH_SPARK_CONNECT_PORT"])
    url = f"sc://localhost:{port}"
    assert f"spark     ready at {url}" in system.log.read_text()
    for address in non_loopback_ipv4():
        assert refuses(address, port), address
    token = (system.data_dir / "secrets" / "spark_connect_token").read_text().strip()
    assert token not in " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in _java_pids())
    assert _attach(url, token).stdout.strip() == "7"
    refused = _attach(url, "not-the-token")
    assert refused.returncode != 0 and "7" not in refused.stdout


def test_the_warm_spark_is_warmed_up_before_a_run_attaches(system: System) -> None:
    port = system.env["WORKBENCH_SPARK_CONNECT_PORT"]
    marker = f"spark.connect.grpc.binding.port={port}".encode()
    (server,) = (pid for pid in _java_pids() if marker in command_line(pid))
    wait_for(lambda: not warm_up.under_way(server), 180, "the warm-up to end")
    assert "warm Spark: warmed up in" in (system.data_dir / "logs" / "spark.log").read_text()
    # What a first run would otherwise wait for: the Python workers' daemon, imports done.
    assert any(python_daemon.MODULE.encode() in command_line(pid) for pid in descendants(server))


# A session's Python task: the artifact id its worker's environment holds (Spark's, per session)
# and the command line of the process its daemon was forked from.
WORKER_ORIGIN = """
import json, os
import pyarrow as pa
from pyspark.sql import SparkSession

def origin(batches):
    daemon = os.getppid()
    with open(f"/proc/{daemon}/stat") as stat:
        forked_by = int(stat.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{forked_by}/cmdline", "rb") as cmdline:
        command = cmdline.read().replace(b"\\0", b" ").decode()
    for _ in batches:
        yield pa.RecordBatch.from_pydict(
            {"artifacts": [os.environ.get("SPARK_JOB_ARTIFACT_UUID", "")], "forked_by": [command]}
        )

spark = SparkSession.builder.remote(os.environ["URL"]).getOrCreate()
(row,) = spark.range(1, numPartitions=1).mapInArrow(origin, "artifacts string, forked_by string").collect()
print(json.dumps(row.asDict()))
"""


def test_each_sessions_python_daemon_forks_from_the_zygote_with_that_sessions_environment(
    system: System,
) -> None:
    """Spark starts a Python daemon per session (its workers' environment holds the session's
    artifact id); the zygote forks it with its imports done, and it takes that session's environment."""
    token = (system.data_dir / "secrets" / "spark_connect_token").read_text().strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_CONNECT")}
    env |= {
        "SPARK_CONNECT_AUTHENTICATE_TOKEN": token,
        "URL": f"sc://localhost:{system.env['WORKBENCH_SPARK_CONNECT_PORT']}",
    }
    origins = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", WORKER_ORIGIN], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-3000:]
        origins.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for origin in origins:
        assert daemon_zygote.MODULE in origin["forked_by"], origin
        assert origin["artifacts"], origin
    assert origins[0]["artifacts"] != origins[1]["artifacts"]  # each its own session's


def _java_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "java":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _own_drivers(spark_log: Path) -> int:
    """Drivers started by runs; not those of the class-data archive's build, which the warm Spark's
    start set going in the background (`pipeline_lib.spark.class_archive`)."""
    if not spark_log.exists():
        return 0
    return sum(
        OWN_DRIVER in line and ARCHIVE_BUILD not in line for line in spark_log.read_text().splitlines()
    )


def _stored(client: DbApiClient) -> dict[str, dict[str, dict]]:
    return {
        name: {doc["_id"]: doc for doc in client.scan(name).to_pylist()} for name in ("cleaned", "quarantine")
    }


def test_runs_attach_to_the_warm_spark_and_store_what_the_pandas_engine_stores(
    system: System, tmp_path: Path
) -> None:
    from pipeline_lib.clean.job import run_clean

    demo = system.workbench("demo", "--students", str(STUDENTS), "--schools", "12", "--url", system.web)
    assert demo.returncode == 0, demo.stderr
    with system.client() as client:
        raw, schools = client.scan("raw"), client.scan("schools")
    spark_log = system.data_dir / "logs" / "spark.log"
    drivers_before = _own_drivers(spark_log)

    clean = system.workbench("run", "clean", "-p", "engine", "spark")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    process = system.workbench("run", "process", "-p", "engine", "spark")
    assert process.returncode == 0, process.stdout + process.stderr
    drivers_after = _own_drivers(spark_log)
    assert drivers_after == drivers_before, "a run started a Spark driver of its own"

    with system.client() as client:
        attached = _stored(client)
        processed = client.list_documents("processed", limit=100)
    aggregated = {doc.get("engine") for doc in processed if doc["_id"].startswith("descriptives:")}
    assert aggregated == {"spark"}  # the process run read and aggregated with Spark

    # The same submissions cleaned by the pandas engine, through a db-api of the test's own.
    other = start_server(SqliteStore(tmp_path / "pandas.sqlite3"), "127.0.0.1:0", token=TOKEN)
    try:
        with DbApiClient(f"127.0.0.1:{other.port}", TOKEN) as pandas_client:
            pandas_client.write("schools", _without_id(schools), mode="upsert", key="school_id")
            pandas_client.write("raw", _without_id(raw), key="submission_id")
            run_clean(None, pandas_client, run_id="pandas")
            expected = _stored(pandas_client)
    finally:
        other.stop(grace=1)
    assert len(expected["cleaned"]) > STUDENTS // 2
    for name in ("cleaned", "quarantine"):
        assert attached[name].keys() == expected[name].keys(), name
        for doc_id, doc in expected[name].items():
            assert attached[name][doc_id] == doc, (name, doc_id)


def _without_id(table: pa.Table) -> pa.Table:
    return table.drop_columns(["_id"]) if "_id" in table.column_names else table
