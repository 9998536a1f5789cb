"""The engine choice: pure, from the requested engine, the records and the master."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import Settings
from pipeline_lib.spark.engine import choose_engine, engine_for


@pytest.mark.parametrize(
    ("requested", "records", "master", "chosen"),
    [
        ("auto", 0, "local[*]", "pandas"),
        ("auto", 1_000, "local[2]", "pandas"),
        ("auto", 1_000, "local", "pandas"),
        ("auto", 1_001, "local[2]", "spark"),  # above the threshold
        ("auto", 10, "spark://10.0.0.5:7077", "spark"),  # a cluster was chosen for scale
        ("auto", 10, "sc://127.0.0.1:15002", "spark"),  # so was a Spark Connect server
        ("auto", 10, "yarn", "spark"),
        ("spark", 10, "local[2]", "spark"),  # forced either way
        ("pandas", 10**9, "spark://h:7077", "pandas"),
    ],
)
def test_auto_takes_pandas_for_small_inputs_on_a_local_master(
    requested: str, records: int, master: str, chosen: str
) -> None:
    assert choose_engine(requested, records=records, master=master, pandas_max_records=1_000) == chosen


def test_an_unknown_engine_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="engine must be one of auto, spark, pandas, got 'dask'"):
        choose_engine("dask", records=1, master="local", pandas_max_records=1)


def test_auto_takes_spark_above_the_runs_own_pandas_limit(sqlite_client: DbApiClient, tmp_path: Path) -> None:
    """`-p max_model_rows 1000` over 1,959 students failed the process run: auto took pandas,
    which refuses more students than max_model_rows (review)."""
    sqlite_client.write("cleaned", pa.table({"_id": [f"s{i}" for i in range(5)]}))
    settings = Settings(data_dir=tmp_path, pandas_max_records=100)
    assert engine_for(sqlite_client, "cleaned", "auto", "local[2]", settings) == "pandas"
    assert engine_for(sqlite_client, "cleaned", "auto", "local[2]", settings, pandas_limit=4) == "spark"
    assert engine_for(sqlite_client, "cleaned", "auto", "local[2]", settings, pandas_limit=5) == "pandas"
