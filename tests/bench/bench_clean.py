"""Benchmark of the clean step: 1,000,000 dirty raw records, Spark against its ceilings and pandas.

Each run starts from its own filled store and is a fresh process, as a scheduled run is: Spark
(`local[2]`, or `--cluster N`: a standalone master with N one-core workers, each a process of its
own, `tests/spark_cluster.py`) timed end to end and split into start / read (the scan workers
clean and check each record and commit the rejects as they read) / clean (the job that finds
the resubmissions and commits and counts the cleaned records), and before it, in a process of
its own, Spark's read of raw alone (as text, materialised); the pandas engine the same way
(`run_clean` without Spark). In the same run, the store's ceilings for the same records: a plain
sqlite3 + BSON scan and CommitClean (`bench_db_api.store_ceilings`). Issue 18's targets are
printed beside the figures: the Spark run at most 2.5 times (scan + CommitClean ceilings + Spark
start), faster than pandas, and the read of raw alone at least 50% of the scan ceiling. Peak
memory of every process (`tests/bench/memory.py`).

`--warm` adds runs attached to a warm Spark (`workbench spark-connect`, started once after the
other runs, as `workbench up` keeps it with WORKBENCH_WARM_SPARK, and warmed up before the first):
what a run saves by not starting one, and the read of raw alone attached to it.

    python tests/bench/bench_clean.py [--records N] [--repeat R] [--master M | --cluster N] [--warm]
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import class_archive
from tests.bench.bench_db_api import start_db_api, store_ceilings
from tests.bench.memory import ROLES, cpu_summary, run_measured
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw
from tests.spark_cluster import standalone_cluster
from tests.wire_servers import free_port

if TYPE_CHECKING:
    import pandas as pd

TARGET_SECONDS = 60
TARGET_CEILING_RATIO = 2.5  # Spark end to end over (scan + CommitClean ceilings + Spark start)
TARGET_READ_SHARE = 0.5  # the Spark read's records/s over the store's scan ceiling
WARM = "spark, warm"  # runs attached to a warm Spark (`--warm`)
READ = "spark read"  # Spark's read of raw alone (the clean's read pass also cleans, checks and commits)
WARM_READ = "spark read, warm"  # the same read attached to the warm Spark (`--warm`)


def one_run(engine: str, address: str, master: str, batch_size: int = 10_000) -> dict[str, float]:
    """One clean in this process, from the first import to the last commit of `batch_size` rows;
    engine `read`: Spark's read of raw alone, as text and materialised (raw stays)."""
    started = time.perf_counter()
    from pipeline_lib.clean.job import RAW_SCHEMA, run_clean
    from pipeline_lib.client.sync import DbApiClient

    spark, startup = None, 0.0
    if engine in ("spark", "read"):
        from pipeline_lib.spark.session import get_spark

        spark = get_spark(master, app_name="bench-clean")
        startup = time.perf_counter() - started
    if engine == "read":
        from pipeline_lib.spark.source import read

        assert spark is not None
        with DbApiClient(address, "bench") as client:
            started = time.perf_counter()
            records = read(spark, client, "raw", RAW_SCHEMA).localCheckpoint(eager=True).count()
            return {"start": startup, "read": time.perf_counter() - started, "records": records}
    with DbApiClient(address, "bench") as client:
        report = run_clean(spark, client, run_id="bench", batch_size=batch_size)
        total = time.perf_counter() - started
        assert client.count("raw") == 0, "the clean left raw records behind"
    return {"start": startup, **report.seconds, "total": total, "records": report.records_in}


def run_in_new_process(
    engine: str, address: str, master: str, db_api_pid: int, warm: WarmSpark | None = None
) -> dict[str, float]:
    """One run in a fresh process; with `warm`, attached to that warm Spark (its memory counted)."""
    args = [sys.executable, __file__, "--one", engine, address, "--master", master]
    env = {**os.environ, **(warm.env if warm else {})}
    return run_measured(
        args, f"the {engine} clean", db_api_pid, spark_server_pid=warm.pid if warm else None, env=env
    )


@dataclass
class WarmSpark:
    """A warm Spark (`workbench spark-connect`) the bench started, and what a run attaches with."""

    pid: int
    env: dict[str, str]


@contextmanager
def warm_spark(master: str, data_dir: Path) -> Iterator[WarmSpark]:
    env = {
        **os.environ,
        "WORKBENCH_DATA_DIR": str(data_dir),
        "WORKBENCH_SPARK_MASTER": master,
        "WORKBENCH_WARM_SPARK": "true",
        "WORKBENCH_SPARK_CONNECT_PORT": str(free_port()),
    }
    command = [sys.executable, "-m", "pipeline_lib.cli", "spark-connect"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        from pipeline_lib.settings import Settings
        from pipeline_lib.spark.warm import answers
        from pipeline_lib.spark.warm_up import under_way

        settings = Settings(data_dir=data_dir, spark_connect_port=int(env["WORKBENCH_SPARK_CONNECT_PORT"]))
        while not answers(settings):
            if server.poll() is not None:
                raise RuntimeError("the warm Spark did not start")
            time.sleep(0.2)
        answered = time.perf_counter()
        while under_way(server.pid):  # as a user's first run finds it some seconds after `workbench up`
            time.sleep(0.2)
        print(f"the warm Spark warmed up {time.perf_counter() - answered:.1f} s after it answered")
        yield WarmSpark(server.pid, {k: env[k] for k in env if k.startswith("WORKBENCH_")})
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--cluster", type=int, default=0, help="a standalone cluster of N one-core workers")
    parser.add_argument(
        "--warm", action="store_true", help="also runs attached to a warm Spark (WORKBENCH_WARM_SPARK)"
    )
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, address = args.one
        print(json.dumps(one_run(engine, address, args.master)))
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
    n = len(raw)
    setup = f"{where}, median of {args.repeat} runs, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    print(f"clean benchmark: {n:,} dirty raw records, {setup}")
    runs: dict[str, list[dict]] = {"spark": [], READ: [], "pandas": [], "ceilings": []}
    os.environ["WORKBENCH_DB_API_TOKEN"] = "bench"
    with tempfile.TemporaryDirectory(prefix="wb-bench-clean-") as tmp:
        # Runs that start their own Spark first, with no warm Spark's JVM (1-3 GB, idle) beside
        # them, as on a machine that keeps none; where one is kept, runs attach to it.
        for run in range(args.repeat):
            runs["ceilings"].append(store_ceilings(raw, "submission_id", Path(tmp) / f"ceiling{run}.sqlite3"))
            for kind in ("pandas", "spark"):
                _measure(runs, kind, raw, Path(tmp) / f"{kind}{run}", args.master, None)
        if args.warm:
            runs[WARM], runs[WARM_READ] = [], []
            try:
                with warm_spark(args.master, Path(tmp) / "warm") as warm:
                    for run in range(args.repeat):
                        _measure(runs, "spark", raw, Path(tmp) / f"warm{run}", args.master, warm)
            except RuntimeError as exc:  # the other runs' figures still count
                print(f"no warm Spark runs: {exc}")
                del runs[WARM], runs[WARM_READ]
    report(runs, n, where)


def _measure(
    runs: dict[str, list[dict]],
    engine: str,
    raw: pd.DataFrame,
    data: Path,
    master: str,
    warm: WarmSpark | None,
) -> None:
    """One run of `engine` on a store of its own filled with `raw`, attached to `warm` if given; a
    Spark run's read of raw alone first, in a process of its own (raw stays)."""
    os.environ["WORKBENCH_DATA_DIR"] = str(data)
    class_archive.provide(data)
    process, client = start_db_api(data)
    try:
        client.write("schools", SCHOOLS, mode="upsert", key="school_id")
        client.write("raw", raw, key="submission_id")
        if engine == "spark":
            read_alone = run_in_new_process("read", client.address, master, process.pid, warm)
            runs[READ if warm is None else WARM_READ].append(read_alone)
        runs[engine if warm is None else WARM].append(
            run_in_new_process(engine, client.address, master, process.pid, warm)
        )
    finally:
        client.close()
        process.terminate()
        process.wait()


def report(runs: dict[str, list[dict]], n: int, where: str) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    total, pandas_total = median("spark", "total"), median("pandas", "total")
    scan, commit, start = median("ceilings", "scan"), median("ceilings", "commit"), median("spark", "start")
    print(f"\n{where}: {total:.1f} s end to end ({n / total:,.0f} records/s), "
          f"target < {TARGET_SECONDS} s: {'met' if total < TARGET_SECONDS else 'MISSED'}")  # fmt: skip
    labels = {"read": "read, clean, check, commit rejects", "clean": "resubmissions, commit cleaned"}
    for key in ("start", "read", "clean"):
        print(f"  {labels.get(key, key):32} {median('spark', key):6.1f} s")
    print(f"  Spark's read of raw alone (a run of its own): {median(READ, 'read'):.1f} s")
    steps = ", ".join(f"{key} {median('pandas', key):.1f}" for key in ("read", "clean", "write"))
    print(f"pandas engine, one process: {pandas_total:.1f} s end to end ({steps})")
    print(f"store ceilings for the same records: scan {scan:.1f} s ({n / scan:,.0f} records/s), "
          f"CommitClean {commit:.1f} s")  # fmt: skip

    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    bound = scan + commit + start
    ratio = total / bound
    read_share = scan / median(READ, "read")
    print("\nissue 18's targets:")
    print(f"  Spark end to end / (scan + CommitClean ceilings + Spark start = {bound:.1f} s): {ratio:.1f}x, "
          f"target <= {TARGET_CEILING_RATIO}x: {verdict(ratio <= TARGET_CEILING_RATIO)}")  # fmt: skip
    print(f"  Spark against the pandas engine: {total:.1f} s vs {pandas_total:.1f} s, "
          f"target faster: {verdict(total < pandas_total)}")  # fmt: skip
    print(f"  Spark read of raw alone, a run's own Spark: {read_share:.0%} of the store's scan ceiling, "
          f"target >= {TARGET_READ_SHARE:.0%}: {verdict(read_share >= TARGET_READ_SHARE)}")  # fmt: skip
    if WARM in runs:
        warm_total = median(WARM, "total")
        steps = ", ".join(f"{key} {median(WARM, key):.1f}" for key in ("start", "read", "clean"))
        print(f"  attached to a warm Spark (started once, not timed): {warm_total:.1f} s end to end "
              f"({steps}); {warm_total - total:+.1f} s against starting its own")  # fmt: skip
        warm_share = scan / median(WARM_READ, "read")
        print(f"  Spark read of raw alone attached to the warm Spark: {median(WARM_READ, 'read'):.1f} s, "
              f"{warm_share:.0%} of the store's scan ceiling, target >= {TARGET_READ_SHARE:.0%}: "
              f"{verdict(warm_share >= TARGET_READ_SHARE)}")  # fmt: skip
    for engine in (e for e in ("spark", WARM, "pandas") if e in runs):
        peaks = ", ".join(f"{role} {max(r[f'peak MB {role}'] for r in runs[engine]):,}" for role in ROLES)
        together = max(r["peak MB all"] for r in runs[engine])
        rss = max(r["peak RSS MB all"] for r in runs[engine])
        print(f"  peak memory, {engine} (MB, PSS): {peaks}; all at once {together:,} (sum of RSS {rss:,})")
        print(f"  CPU seconds, {engine}: {cpu_summary(runs[engine])}")
    for name, values in runs.items():
        print(f"\n{name} runs:", [{k: round(v, 2) for k, v in r.items()} for r in values])


if __name__ == "__main__":
    main()
