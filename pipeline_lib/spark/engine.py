"""Which engine a run uses: Spark, or pandas in the run's own process.

Starting Spark costs seconds before the first record is read, and its per-task overhead
dominates small inputs; pandas holds the whole input in memory. So `auto` (the notebooks'
default) takes pandas up to `WORKBENCH_PANDAS_MAX_RECORDS` records on a local master, and Spark
above it or whenever the master is a cluster or a Spark Connect server (its owner chose it for
scale). `spark` and `pandas` force one. `make bench` (`tests/bench/bench_engines.py`) measures
where the two cross on a machine. Imports nothing heavy: a pandas run never loads pyspark.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import Settings

ENGINES = ("auto", "spark", "pandas")
Engine = Literal["spark", "pandas"]

_LOCAL_MASTER = re.compile(r"local(?:\[(?P<cores>\*|\d+)(?:,\s*\d+)?\])?")


def local_cores(master: str) -> int | None:
    """The cores of a `local`, `local[N]` or `local[*]` master, else None (not local)."""
    match = _LOCAL_MASTER.fullmatch(master)
    if match is None:
        return None
    cores = match.group("cores")
    if cores is None:
        return 1
    return (os.cpu_count() or 1) if cores == "*" else max(1, int(cores))


def choose_engine(requested: str, *, records: int, master: str, pandas_max_records: int) -> Engine:
    """The engine for a run over `records` records: `requested` unless it is `auto`."""
    if requested == "spark":
        return "spark"
    if requested == "pandas":
        return "pandas"
    if requested != "auto":
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {requested!r}")
    if local_cores(master) is None:
        return "spark"
    return "pandas" if records <= pandas_max_records else "spark"


def engine_for(
    client: DbApiClient,
    collection: str,
    requested: str,
    master: str | None,
    settings: Settings,
    *,
    pandas_limit: int | None = None,
) -> Engine:
    """The engine for a run over `collection` on `master` (None: the settings' master); its
    records are counted only when `requested` is `auto`. `pandas_limit`: the most records the
    run's pandas path takes (the process's `max_model_rows`), if fewer than the settings allow."""
    limit = settings.pandas_max_records
    if pandas_limit is not None:
        limit = min(limit, pandas_limit)
    return choose_engine(
        requested,
        records=client.count(collection) if requested == "auto" else 0,
        master=master or settings.spark_master,
        pandas_max_records=limit,
    )
