"""A local[2] Spark session shared by the analysis tests that need Spark (marked `spark`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from pipeline_lib.settings import Settings
from pipeline_lib.spark_session import get_spark

_SPARK_ENV = ("SPARK_LOCAL_IP", "PYSPARK_PYTHON", "SPARK_LOCAL_DIRS")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    saved = {name: os.environ.get(name) for name in _SPARK_ENV}
    settings = Settings(data_dir=tmp_path_factory.mktemp("spark"), db_api_address="127.0.0.1:9")
    session = get_spark("local[2]", app_name="workbench-analysis-tests", settings=settings)
    yield session
    session.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
