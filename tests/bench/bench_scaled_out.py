"""Benchmark of distribution: the clean and the process on a standalone Spark cluster of two one-core
workers, beside Spark `local[2]`, each run a fresh process as a scheduled run is.

1. At `--records` (1,000,000): through the embedded db-api, one process. On two cores no speed-up
   is expected: the figures show what running Spark as separate master, worker and executor
   processes costs.
2. At `--replica-records` (1,000,000): the cluster through two `workbench db-api` replicas over a
   MongoDB wire-protocol server, beside `local[2]` through one. This machine has no MongoDB server;
   `--replica-server` picks the stand-in. mongo-java-server (the default; Java, in memory, built
   from Maven Central by `tests/wire_servers.py`) has no transactions, and its `$in` costs the
   square of the list's length, so its clean commits 1,000 records per batch (10,000 elsewhere).
   SecantusDB (the scaled-out test's server, with transactions) commits about 250 records/s here:
   give it `--replica-records 20000`. FerretDB 1 refuses the result documents' nested arrays.

The clean runs `run_clean` on `dirty_raw` records (with their resubmissions), the process
`run_process` on records simulated from a school-effects model; each from its own database,
filled beforehand (not timed). Median of `--repeat` runs; peak memory of the run's processes, the
db-api processes and the cluster's workers (`tests/bench/memory.py`).

    python tests/bench/bench_scaled_out.py [--records N] [--replica-records N] [--repeat R] [--parts 1 2]
        [--replica-server mongo-java-server|secantusdb]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd
import pymongo

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire.requests import DbApiCallError
from tests import wire_servers
from tests.bench import class_archive
from tests.bench.bench_clean import one_run as clean_run
from tests.bench.bench_process import process_run
from tests.bench.memory import run_measured
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw
from tests.pipeline_lib.process.analysis import simulated
from tests.processes import start_workbench, wait_for
from tests.spark_cluster import standalone_cluster
from tests.wire_servers import free_port

TOKEN = "bench"
# Records per clean commit on each replica server (see the docstring); the embedded store's is 10,000.
COMMIT_BATCH = {"mongo-java-server": 1_000, "secantusdb": 10_000}
DEFAULT_COMMIT_BATCH = 10_000
STARTERS = {
    "mongo-java-server": wire_servers.start_mongo_java_server,
    "secantusdb": wire_servers.start_secantusdb,
}
MAX_MESSAGE_BYTES = 256 << 20
WRITE_BATCH = 20_000  # records per bulk write while filling a database


@contextmanager
def db_apis(uri: str | None, count: int, folder: Path) -> Iterator[tuple[str, list[int]]]:
    """`count` db-api replicas over the database at `uri` (None: one db-api on the embedded store
    in `folder`): their address list and pids."""
    ports = [free_port() for _ in range(count)]
    env = {**os.environ, "WORKBENCH_DB_API_TOKEN": TOKEN, "WORKBENCH_DATA_DIR": str(folder)}
    env.pop("WORKBENCH_MONGO_URI", None)
    if uri is not None:
        env["WORKBENCH_MONGO_URI"] = uri
    folder.mkdir(parents=True, exist_ok=True)
    processes = [
        start_workbench(
            "db-api", env, folder / f"db-api-{port}.log", ("--host", "127.0.0.1", "--port", str(port))
        )
        for port in ports
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            _wait_until_serving(f"127.0.0.1:{port}", process, folder / f"db-api-{port}.log")
        yield ",".join(f"127.0.0.1:{port}" for port in ports), [p.pid for p in processes]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


def _wait_until_serving(address: str, process: subprocess.Popen, log: Path) -> None:
    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the db-api replica at {address} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(DbApiCallError):
            return client.health() == "SERVING"
        return False

    with DbApiClient(address, TOKEN, timeout=5) as client:
        wait_for(serving, 60, f"the db-api replica at {address}")


def fill(address: str, schools: pd.DataFrame, collection: str, records: pd.DataFrame) -> float:
    """Write the schools, then `records` into `collection`, through the replicas at `address`;
    the seconds the records took."""
    with DbApiClient(address, TOKEN, timeout=600, max_message_bytes=MAX_MESSAGE_BYTES) as client:
        client.write("schools", schools, mode="upsert", key="school_id")
        started = time.perf_counter()
        for start in range(0, len(records), WRITE_BATCH):
            client.write(collection, records.iloc[start : start + WRITE_BATCH], key="submission_id")
    return time.perf_counter() - started


def run_in_new_process(
    step: str, address: str, master: str, pids: list[int], workers: list[int], batch_size: int
) -> dict:
    """One clean or process run in a fresh process, with peak memory (replicas and, on the
    cluster, its workers' processes counted)."""
    args = [sys.executable, __file__, "--one", step, address, "--master", master, "--batch", str(batch_size)]
    return run_measured(
        args, f"the {step} run", pids[0], replica_pids=pids[1:], cluster_pids=workers, env=os.environ.copy()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--replica-records", type=int, default=1_000_000)
    parser.add_argument("--replica-server", choices=sorted(COMMIT_BATCH), default="mongo-java-server")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--students-per-school",
        type=int,
        default=1_000,
        help="of the process's records (at least 10 schools)",
    )
    parser.add_argument("--parts", type=int, nargs="+", choices=(1, 2), default=[1, 2])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=DEFAULT_COMMIT_BATCH, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        step, address = args.one
        if step == "clean":
            result = clean_run("spark", address, args.master, batch_size=args.batch)
        else:
            result = process_run(address, args.master, max_model_rows=2_000_000)
        print(json.dumps(result))
        return
    print(
        f"distribution benchmark: median of {args.repeat} runs; {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    os.environ["WORKBENCH_DB_API_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory(prefix="wb-bench-scaled-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        os.environ["WORKBENCH_DATA_DIR"] = str(folder / "runs")  # the runs' Spark scratch and logs
        class_archive.provide(folder / "runs")
        cluster = stack.enter_context(standalone_cluster(folder / "spark", workers=2, cores=1))
        workers = [worker.process.pid for worker in cluster.workers]
        local = Setup("local[2]", "local[2]", [], 1)
        on_cluster = Setup("cluster of 2 workers", cluster.master_url, workers, 1)
        per_school, repeat = args.students_per_school, args.repeat
        if 1 in args.parts:
            print(f"\n1. {args.records:,} records through the embedded db-api")
            bench(args.records, per_school, repeat, [local, on_cluster], None, folder / "embedded")
        if 2 in args.parts:
            name = args.replica_server
            server = STARTERS[name](folder / name)
            stack.callback(server.stop)
            uri = server.uri.partition("?")[0].rstrip("/")
            print(f"\n2. {args.replica_records:,} records through db-api replicas over {name}")
            one = Setup("local[2], one replica", "local[2]", [], 1)
            two = Setup("cluster of 2 workers, two replicas", cluster.master_url, workers, 2)
            runs = folder / f"{name}-runs"
            bench(args.replica_records, per_school, repeat, [one, two], uri, runs, COMMIT_BATCH[name])


@dataclass(frozen=True)
class Setup:
    name: str
    master: str
    workers: list[int]  # the cluster's worker pids (their executors are their children)
    db_apis: int


def bench(
    records: int,
    per_school: int,
    repeat: int,
    setups: list[Setup],
    uri: str | None,
    folder: Path,
    batch_size: int = DEFAULT_COMMIT_BATCH,
) -> None:
    """Each step on each setup, `repeat` times, from a database of its own (dropped after its
    run: an in-memory server would hold them all); then the figures."""
    raw = dirty_raw(int(records / 1.05), seed=11)
    n_schools = max(10, records // per_school)  # a few per school: most cells suppressed, LPs dominate
    students = simulated.students(records, n_schools, seed=11)
    cleaned, schools = simulated.cleaned_records(students), simulated.schools(n_schools, seed=11)
    steps = {"clean": ("raw", raw, SCHOOLS), "process": ("cleaned", cleaned, schools)}
    runs: dict[tuple[str, str], list[dict]] = {(s.name, step): [] for step in steps for s in setups}
    fills: dict[str, list[float]] = {"raw": [], "cleaned": []}
    for run in range(repeat):
        for step, (collection, data, known) in steps.items():
            for n, setup in enumerate(setups):
                database = f"bench_{step}_{n}_{run}"
                at = None if uri is None else f"{uri}/{database}"
                with db_apis(at, setup.db_apis, folder / database) as (address, pids):
                    fills[collection].append(fill(address, known, collection, data))
                    result = run_in_new_process(step, address, setup.master, pids, setup.workers, batch_size)
                if uri is not None:
                    mongo: pymongo.MongoClient = pymongo.MongoClient(uri)
                    with mongo:
                        mongo.drop_database(database)
                runs[(setup.name, step)].append(result)
                print(f"  {step} {run + 1}, {setup.name}: {result['total']:.1f} s", flush=True)
    report(runs, fills, {"clean": len(raw), "process": len(cleaned)})


def report(
    runs: dict[tuple[str, str], list[dict]], fills: dict[str, list[float]], sizes: dict[str, int]
) -> None:
    median = statistics.median
    print(
        f"\nfilling each database through its db-api (not timed below): raw {median(fills['raw']):.1f} s, "
        f"cleaned {median(fills['cleaned']):.1f} s"
    )
    local: dict[str, float] = {}
    for (setup, step), results in runs.items():
        total = median([r["total"] for r in results])
        parts = ("start", "read", "clean") if step == "clean" else ("spark start", "read")
        split = ", ".join(f"{p} {median([r[p] for r in results]):.1f}" for p in parts)
        cost = f"; {total / local[step]:.2f}x local[2]" if step in local else ""
        local.setdefault(step, total)
        peak = max(r["peak MB all"] for r in results)
        print(
            f"{step:8} {setup:36} {total:7.1f} s ({sizes[step] / total:,.0f} records/s; {split}; "
            f"peak {peak:,} MB all at once (PSS){cost})"
        )
    for (setup, step), results in runs.items():
        print(f"\n{step}, {setup}:", [{k: round(v, 2) for k, v in r.items()} for r in results])


if __name__ == "__main__":
    main()
