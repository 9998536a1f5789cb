"""Benchmark of the clean step: 1,000,000 dirty raw records, end to end on local[2].

Times the whole run including Spark start-up, split into read / clean / write (CommitClean), and
beside it the same rules applied by pandas in one process to the same data in the same run.
`--cluster N` runs it on a standalone Spark master with N one-core workers instead, each a process
of its own (`tests/spark_cluster.py`): on one machine that shows what distribution costs.

    python tests/bench/bench_clean.py [--records N] [--repeat R] [--master M | --cluster N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline_lib.clean import pandas_engine
from tests.bench.bench_db_api import start_db_api
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw
from tests.spark_cluster import standalone_cluster

TARGET_SECONDS = 60


def spark_run(address: str, master: str) -> dict[str, float]:
    """One clean in this process, from starting Spark to the last commit."""
    from pipeline_lib.clean.job import run_clean
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.spark.session import get_spark

    started = time.perf_counter()
    spark = get_spark(master, app_name="bench-clean")
    startup = time.perf_counter() - started
    with DbApiClient(address, "bench") as client:
        report = run_clean(spark, client, run_id="bench", batch_size=10_000)
        total = time.perf_counter() - started
        assert client.count("raw") == 0, "the clean left raw records behind"
    return {"spark start": startup, **report.seconds, "total": total, "records": report.records_in}


def spark_run_in_new_process(address: str, master: str) -> dict[str, float]:
    """Each run starts Spark afresh in its own process, as a scheduled run does."""
    args = [sys.executable, __file__, "--spark-run", address, "--master", master]
    output = subprocess.run(args, check=True, capture_output=True, text=True, env=os.environ.copy()).stdout
    return json.loads(output.strip().splitlines()[-1])


def pandas_run(client) -> dict[str, float]:
    started = time.perf_counter()
    raw = client.scan_pandas("raw", arrow_strings=False)
    read = time.perf_counter() - started
    started = time.perf_counter()
    result = pandas_engine.clean(raw, set(SCHOOLS["school_id"]))
    clean = time.perf_counter() - started
    return {"read": read, "clean": clean, "records": len(raw), "cleaned": len(result.cleaned)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--cluster", type=int, default=0, help="a standalone cluster of N one-core workers")
    parser.add_argument("--spark-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spark_run:
        print(json.dumps(spark_run(args.spark_run, args.master)))
        return
    if args.cluster:
        folders = tempfile.TemporaryDirectory(prefix="wb-bench-cluster-")
        with folders as folder, standalone_cluster(Path(folder), workers=args.cluster, cores=1) as cluster:
            args.master = cluster.master_url
            bench(args, f"a standalone cluster of {args.cluster} one-core workers")
        return
    bench(args, f"Spark {args.master}")


def bench(args: argparse.Namespace, where: str) -> None:
    raw = dirty_raw(int(args.records / 1.05), seed=11)
    setup = f"{where}, median of {args.repeat} runs, {os.cpu_count()} cores"
    print(f"clean benchmark: {len(raw):,} dirty raw records, {setup}")
    spark_runs, pandas_runs = [], []
    with tempfile.TemporaryDirectory(prefix="wb-bench-clean-") as tmp:
        for run in range(args.repeat):
            process, client = start_db_api(Path(tmp) / f"run{run}")
            os.environ["WORKBENCH_DB_API_TOKEN"] = "bench"
            os.environ["WORKBENCH_DATA_DIR"] = str(Path(tmp) / f"run{run}")
            try:
                client.write("schools", SCHOOLS, mode="upsert", key="school_id")
                client.write("raw", raw, key="submission_id")
                pandas_runs.append(pandas_run(client))
                spark_runs.append(spark_run_in_new_process(client.address, args.master))
            finally:
                client.close()
                process.terminate()
                process.wait()

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    n = len(raw)
    total = median(spark_runs, "total")
    print(f"\n{where}: {total:.1f} s end to end ({n / total:,.0f} records/s), "
          f"target < {TARGET_SECONDS} s: {'met' if total < TARGET_SECONDS else 'MISSED'}")  # fmt: skip
    for key in ("spark start", "read", "clean", "write"):
        print(f"  {key:12} {median(spark_runs, key):6.1f} s")
    p_read, p_clean = median(pandas_runs, "read"), median(pandas_runs, "clean")
    print(f"pandas, one process: read {p_read:.1f} s, clean {p_clean:.1f} s ({n / p_clean:,.0f} records/s)")
    print("\nruns:", [{k: round(v, 2) for k, v in r.items()} for r in spark_runs])
    print("pandas runs:", [{k: round(v, 2) for k, v in r.items()} for r in pandas_runs])


if __name__ == "__main__":
    main()
