"""Benchmark of the two engines at growing sizes: where pandas (in the run's process) stops being
faster than Spark local[2], for the clean and the process step, with each run's peak memory.

Each run is a fresh process, as a scheduled run is (imports, and for Spark the JVM, counted):
seconds end to end, records/s, and peak memory sampled over every process of the run
(`tests/bench/memory.py`): the run's Python, the JVM (driver and local executors), the Python
workers Spark forks, and the db-api; "peak MB" is the largest sum of their proportional set sizes
at one moment (shared pages counted once). The crossover is
the smallest size at which Spark was faster; `WORKBENCH_PANDAS_MAX_RECORDS` (the `auto` engine's
threshold) should sit below it, and where pandas stays faster its memory decides.

The default sizes are issue 18's cost curve; at 3,000,000 records one repeat of both steps and
engines takes about an hour on two cores (`--sizes 20000,100000` for a quick look).

    python tests/bench/bench_engines.py [--sizes 20000,100000,1000000,3000000] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline_lib.process.job import DEFAULT_MAX_MODEL_ROWS
from pipeline_lib.settings import PANDAS_MAX_RECORDS
from tests.bench import class_archive
from tests.bench.bench_db_api import start_db_api
from tests.bench.memory import ROLES, run_measured

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
    return {"seconds": time.perf_counter() - started, "records": records}


def run_in_new_process(step: str, engine: str, address: str, master: str, db_api_pid: int) -> dict:
    args = [sys.executable, __file__, "--one", step, engine, address, "--master", master]
    return run_measured(args, f"the {engine} {step} run", db_api_pid, env=os.environ.copy())


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


def refuses(step: str, engine: str, size: int) -> bool:
    """The pandas process run refuses more students than max_model_rows (it would hold them all
    in memory, where Spark samples for the models): nothing to measure there."""
    return step == "process" and engine == "pandas" and size > DEFAULT_MAX_MODEL_ROWS


def measure(step: str, size: int, repeat: int, master: str, tmp: Path) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    for attempt in range(repeat):
        for engine in (e for e in ENGINES if not refuses(step, e, size)):
            data = tmp / f"{step}-{size}-{engine}-{attempt}"
            os.environ["WORKBENCH_DATA_DIR"] = str(data)
            class_archive.provide(data)
            process, client = start_db_api(data)
            try:
                fill(step, client, size)
                runs[engine].append(run_in_new_process(step, engine, client.address, master, process.pid))
            finally:
                client.close()
                process.terminate()
                process.wait()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="20000,100000,1000000,3000000")
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
            crossover: int | None = None
            raced: list[int] = []
            refused: list[int] = []
            for size in sizes:
                runs = measure(step, size, args.repeat, args.master, Path(tmp))
                cells, seconds = [], {}
                for engine in ENGINES:
                    if not runs[engine]:
                        cells.append(f"{'refused: over max_model_rows':>25}")
                        continue
                    seconds[engine] = statistics.median(r["seconds"] for r in runs[engine])
                    records = runs[engine][0]["records"]
                    peak = max(r["peak MB all"] for r in runs[engine])
                    cells.append(f"{seconds[engine]:8.1f} {records / seconds[engine]:8,.0f} {peak:7,.0f}")
                # Only a race both engines ran decides the crossover: a refused pandas run is no loss.
                both = len(seconds) == len(ENGINES)
                faster = min(seconds, key=seconds.__getitem__) if both else "pandas refused"
                (raced if both else refused).append(size)
                if faster == "spark" and crossover is None:
                    crossover = size
                print(f"{'':7}{size:>9,} | {cells[0]} | {cells[1]} | {faster}")
                for engine in (e for e in ENGINES if runs[e]):
                    peaks = {role: max(r[f"peak MB {role}"] for r in runs[engine]) for role in ROLES}
                    roles = ", ".join(f"{role} {mb:,}" for role, mb in peaks.items())
                    print(f"{'':17}{engine} peak MB (PSS) by process: {roles}")
            verdict = (
                f"Spark first faster at {crossover:,} records"
                if crossover
                else f"pandas faster at every size both engines ran (up to {max(raced, default=0):,})"
            )
            if refused:
                sizes_refused = ", ".join(f"{size:,}" for size in refused)
                verdict += f"; pandas refused {sizes_refused} (over max_model_rows)"
            print(f"  crossover ({step}): {verdict}")


if __name__ == "__main__":
    main()
