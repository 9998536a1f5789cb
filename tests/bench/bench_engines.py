"""Benchmark of the two engines at growing sizes: where pandas (in the run's process) stops being
faster than Spark local[2], for the clean and the process step, with each run's peak memory.

Each run is a fresh process, as a scheduled run is (imports, and for Spark the JVM, counted):
seconds end to end, records/s, and the run process's peak resident memory (for Spark, the
driver's Python; the JVM's heap is capped by its settings). The crossover is the smallest size at
which Spark was faster; `WORKBENCH_PANDAS_MAX_RECORDS` (the `auto` engine's threshold) should sit
below it, and where pandas stays faster its memory decides.

    python tests/bench/bench_engines.py [--sizes 20000,100000,300000] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline_lib.settings import PANDAS_MAX_RECORDS
from tests.bench.bench_db_api import start_db_api

ENGINES = ("pandas", "spark")


def one_run(step: str, engine: str, address: str, master: str) -> dict[str, float]:
    """One clean or process run in this process, from the first import to the last write."""
    started = time.perf_counter()
    from pipeline_lib.client.sync import DbApiClient

    spark = None
    if engine == "spark":
        from pipeline_lib.spark.session import get_spark

        spark = get_spark(master, app_name=f"bench-{step}")
    with DbApiClient(address, "bench") as client:
        if step == "clean":
            from pipeline_lib.clean.job import run_clean

            report = run_clean(spark, client, run_id="bench", batch_size=10_000)
            records = report.records_in
        else:
            from pipeline_lib.process.job import run_process

            records = run_process(spark, client, run_id="bench", seed=1).records_in
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": time.perf_counter() - started, "records": records, "peak_mb": peak_mb}


def run_in_new_process(step: str, engine: str, address: str, master: str) -> dict[str, float]:
    args = [sys.executable, __file__, "--one", step, engine, address, "--master", master]
    done = subprocess.run(args, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"the {engine} {step} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fill(step: str, client, records: int) -> None:  # type: ignore[no-untyped-def]
    """`raw` (clean) or `cleaned` and `schools` (process) with about `records` records."""
    if step == "clean":
        from tests.notebooks.dirty_data import SCHOOLS, dirty_raw

        client.write("schools", SCHOOLS, mode="upsert", key="school_id")
        client.write("raw", dirty_raw(int(records / 1.05), seed=11), key="submission_id")
    else:
        from tests.pipeline_lib.process.analysis import simulated

        schools = max(20, records // 1_000)
        students = simulated.students(records, schools, seed=11)
        client.write("schools", simulated.schools(schools, seed=11), mode="upsert", key="school_id")
        client.write("cleaned", simulated.cleaned_records(students), mode="upsert", key="submission_id")


def measure(step: str, size: int, repeat: int, master: str, tmp: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    for attempt in range(repeat):
        for engine in ENGINES:
            data = tmp / f"{step}-{size}-{engine}-{attempt}"
            os.environ["WORKBENCH_DATA_DIR"] = str(data)
            process, client = start_db_api(data)
            try:
                fill(step, client, size)
                runs[engine].append(run_in_new_process(step, engine, client.address, master))
            finally:
                client.close()
                process.terminate()
                process.wait()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="20000,100000,300000")
    parser.add_argument("--steps", default="clean,process")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        step, engine, address = args.one
        print(json.dumps(one_run(step, engine, address, args.master)))
        return
    os.environ["WORKBENCH_DB_API_TOKEN"] = "bench"
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"engine benchmark: Spark {args.master} against pandas, median of {args.repeat}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; auto threshold now {PANDAS_MAX_RECORDS:,}"
    )
    with tempfile.TemporaryDirectory(prefix="wb-bench-engines-") as tmp:
        for step in args.steps.split(","):
            print(f"\n{step}: {'records':>9} | {'pandas s':>8} {'rec/s':>8} {'peak MB':>7} | "
                  f"{'spark s':>8} {'rec/s':>8} {'peak MB':>7} | faster")  # fmt: skip
            crossover = None
            for size in sizes:
                runs = measure(step, size, args.repeat, args.master, Path(tmp))
                cells, seconds = [], {}
                for engine in ENGINES:
                    seconds[engine] = statistics.median(r["seconds"] for r in runs[engine])
                    records = runs[engine][0]["records"]
                    peak = max(r["peak_mb"] for r in runs[engine])
                    cells.append(f"{seconds[engine]:8.1f} {records / seconds[engine]:8,.0f} {peak:7,.0f}")
                faster = min(seconds, key=seconds.__getitem__)
                if faster == "spark" and crossover is None:
                    crossover = size
                print(f"{'':7}{size:>9,} | {cells[0]} | {cells[1]} | {faster}")
            verdict = (
                f"Spark first faster at {crossover:,} records"
                if crossover
                else f"pandas faster at every size up to {sizes[-1]:,}"
            )
            print(f"  crossover ({step}): {verdict}")


if __name__ == "__main__":
    main()
