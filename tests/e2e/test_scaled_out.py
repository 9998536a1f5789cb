"""Every tier replicated on one machine, then the same submissions on the single-machine default.

Scaled out: SecantusDB (a MongoDB wire server with transactions), two `workbench db-api`
replicas over it, `workbench web --workers 2` sharing its counts there, and a standalone Spark
master with two workers (one core each), every one a process of its own. Demo students go in
through the web app, then the clean and the process run (`workbench run clean`, `workbench run
process`: what `run all` runs) on the cluster through both replicas: the Spark executors spread
their scans and commits over them, while one replica is killed with SIGKILL during the clean's
commits and one Spark worker (with its executor) during the process run. A run that fails is run
again, as the next scheduled run would be.

The default: the same demo (same seed) through `workbench web` on an embedded db-api, and
`workbench run all` with nothing else set. Both must store the same cleaned records and the same
results.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline_lib.cli.addresses import http_answers
from pipeline_lib.client.sync import DbApiClient
from tests import wire_servers
from tests.conftest import TOKEN
from tests.processes import children, wait_for
from tests.spark_cluster import Cluster, standalone_cluster
from tests.wire_servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.mongo, pytest.mark.spark, pytest.mark.timeout(1800)]

WORKBENCH = [sys.executable, "-m", "pipeline_lib.cli"]
# The size the scale-out issue names. The clean's commits are bound by SecantusDB (one Python
# process, ~100% of a core): 50,000 students took 4 min 20 s here on an idle machine, 3,000 took
# 1 min 37 s. SCALED_OUT_STUDENTS sets another size.
STUDENTS = int(os.environ.get("SCALED_OUT_STUDENTS", "50000"))
SCHOOLS = 60 if STUDENTS <= 10_000 else 120


@dataclass
class Stack:
    env: dict[str, str]
    folder: Path
    web: str
    processes: dict[str, subprocess.Popen]

    def workbench(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*WORKBENCH, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, (
            f"workbench {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return done

    def start(self, name: str, *args: str) -> subprocess.Popen:
        with (self.folder / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [*WORKBENCH, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def client(self) -> DbApiClient:
        return DbApiClient(self.env["WORKBENCH_DB_API_ADDRESS"], TOKEN, timeout=120)

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _environment(folder: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        WORKBENCH_DATA_DIR=str(folder / "var"),
        WORKBENCH_DB_API_TOKEN=TOKEN,
        WORKBENCH_WEB_PORT=str(free_port()),
    )
    env.update({f"WORKBENCH_{name.upper()}": value for name, value in settings.items()})
    return env


def _serve_web(stack: Stack, *args: str) -> None:
    web = stack.start("web", "web", *args)
    wait_for(lambda: web.poll() is not None or http_answers(f"{stack.web}/healthz"), 120, "workbench web")
    assert web.poll() is None, (stack.folder / "web.log").read_text()[-3000:]


def _ready(client: DbApiClient) -> bool:
    try:
        return client.health() == "SERVING"
    except Exception:
        return False


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Cluster]]:
    folder = tmp_path_factory.mktemp("scaled")
    wire = wire_servers.start_secantusdb(folder / "secantusdb")
    ports = [free_port(), free_port()]
    env = _environment(
        folder,
        mongo_uri=f"{wire.uri.partition('?')[0].rstrip('/')}/scaled",
        db_api_address=",".join(f"127.0.0.1:{port}" for port in ports),
    )
    stack = Stack(env, folder, f"http://127.0.0.1:{env['WORKBENCH_WEB_PORT']}", {})
    try:
        # What the executors would find if they read settings of their own: all wrong. They must
        # use only what the driver sends with the data source (address list, token).
        wrong = {
            "WORKBENCH_DB_API_ADDRESS": f"127.0.0.1:{free_port()}",
            "WORKBENCH_DB_API_TOKEN": "not-the-token",
            "WORKBENCH_DATA_DIR": "var",
        }
        with standalone_cluster(folder / "spark", workers=2, cores=1, env=wrong) as cluster:
            stack.env["WORKBENCH_SPARK_MASTER"] = cluster.master_url
            for n, port in enumerate(ports):
                stack.start(f"db-api-{n}", "db-api", "--host", "127.0.0.1", "--port", str(port))
            for port in ports:
                with DbApiClient(f"127.0.0.1:{port}", TOKEN, timeout=5) as probe:
                    wait_for(lambda probe=probe: _ready(probe), 60, f"the db-api replica on {port}")
            _serve_web(stack, "--workers", "2")
            yield stack, cluster
    finally:
        stack.stop()
        wire.stop()


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`workbench db-api` and `workbench web` with nothing set but ports and the data dir."""
    folder = tmp_path_factory.mktemp("default")
    env = _environment(folder, db_api_address=f"127.0.0.1:{free_port()}")
    stack = Stack(env, folder, f"http://127.0.0.1:{env['WORKBENCH_WEB_PORT']}", {})
    try:
        stack.start("db-api", "db-api")
        with stack.client() as probe:
            wait_for(lambda: _ready(probe), 60, "the db-api")
        _serve_web(stack)
        yield stack
    finally:
        stack.stop()


def _kill_during(run: subprocess.Popen, started: object, victim: object, what: str) -> float:
    """Kill `victim()` once `started()` holds while `run` is still going; seconds into the run."""
    begun = time.monotonic()
    wait_for(lambda: run.poll() is not None or started(), 900, what)
    assert run.poll() is None, f"the run ended before {what}"
    victim()  # type: ignore[operator]
    return time.monotonic() - begun


def _cleaned(client: DbApiClient) -> dict[str, dict]:
    """The cleaned records without when things happened (submitted, cleaned) and by which run."""
    table = client.scan("cleaned").to_pylist()
    return {
        row["_id"]: {k: v for k, v in row.items() if not k.endswith("_at") and k != "run_id"} for row in table
    }


def _results(client: DbApiClient) -> dict[str, dict]:
    documents = client.list_documents("processed", limit=1000)
    keep = ("key", "status", "n_input", "tables", "summary", "scope", "analysis")
    return {d["_id"]: {k: d.get(k) for k in keep} for d in documents}


def _close(a: object, b: object, path: str = "") -> list[str]:
    """Where `a` and `b` differ beyond float rounding (relative 1e-6), as paths."""
    if (isinstance(a, float) and isinstance(b, float | int)) or (isinstance(b, float) and isinstance(a, int)):
        if (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9):  # type: ignore[arg-type]
            return []
        return [f"{path}: {a} != {b}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in _close(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _close(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_the_scaled_out_system_gives_the_defaults_results_through_failures(
    scaled: tuple[Stack, Cluster], default: Stack
) -> None:
    stack, cluster = scaled
    demo = ("demo", "--students", str(STUDENTS), "--schools", str(SCHOOLS))
    for system in (stack, default):
        started = time.monotonic()
        system.workbench(*demo, "--url", system.web)
        print(f"demo into {system.folder.name}: {time.monotonic() - started:.1f} s")
    with stack.client() as client, default.client() as reference:
        assert client.count("raw") == reference.count("raw") > STUDENTS

        # The clean on the cluster; a db-api replica dies once its commits have begun.
        before = client.count("raw")
        started = time.monotonic()
        run = stack.start("clean", "run", "clean")
        replica = stack.processes["db-api-0"]
        at = _kill_during(run, lambda: _fewer(client, before), replica.kill, "the clean's first commit")
        cleaned_exit = run.wait(timeout=1200)
        took = time.monotonic() - started
        print(f"clean: replica killed {at:.1f} s in; exit {cleaned_exit} after {took:.1f} s")
        if cleaned_exit != 0:  # as the next scheduled run would
            stack.workbench("run", "clean")
        assert client.count("raw") == 0

        # The process run; a Spark worker (and its executor) dies once the run has an executor.
        started = time.monotonic()
        run = stack.start("process", "run", "process")
        worker = cluster.workers[0]
        at = _kill_during(run, lambda: _executor_of(worker), worker.kill, "an executor on worker 0")
        processed_exit = run.wait(timeout=1200)
        took = time.monotonic() - started
        print(f"process: worker killed {at:.1f} s in; exit {processed_exit} after {took:.1f} s")
        if processed_exit != 0:
            stack.workbench("run", "process")

        started = time.monotonic()
        default.workbench("run", "all")
        print(f"default run all: {time.monotonic() - started:.1f} s")

        ours, theirs = _cleaned(client), _cleaned(reference)
        assert ours.keys() == theirs.keys()
        assert _close(ours, theirs) == []
        assert client.count("quarantine") == reference.count("quarantine")
        results, expected = _results(client), _results(reference)
        assert results.keys() == expected.keys()
        assert _close(results, expected) == []
    # The tasks ran in executor processes the workers launched (their logs are in the work dir).
    assert list(cluster.work_dir.glob("app-*/*/stderr")), "the workers launched no executor"


def _fewer(client: DbApiClient, before: int) -> bool:
    try:
        return client.count("raw") < before
    except Exception:
        return False


def _executor_of(worker: object) -> bool:
    return bool(children(worker.process.pid))  # type: ignore[attr-defined]
