"""Values all equal have no spread, on either engine, exactly. A constant like 0.1 leaves a
rounding residue in a variance (pandas: 1.5e-17 for an SD; Spark: 0, or not once the values are
split over partitions), which documents keeping 12 significant digits would publish: an SD that
is not 0, a correlation or an SES-math line computed from noise."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.process.analysis import correlations as c
from pipeline_lib.process.analysis import descriptives as ds
from pipeline_lib.process.analysis import distributions as d

# Seven students: SES and study hours the same inexact value; math scores spread.
STUDENTS = pd.DataFrame(
    {
        "school_id": ["S1"] * 7,
        "sector": ["public"] * 4 + ["private"] * 3,
        "ses": [0.1] * 7,
        "study_hours_week": [0.1] * 7,
        "math_score": [40.0, 50.0, 61.0, 47.0, 52.0, 58.0, 45.0],
    }
)
VARIABLES = ("ses", "study_hours_week", "math_score")
GROUPINGS = {"overall": (), "by_sector": ("sector",)}


def _check(described: dict[str, pd.DataFrame], correlated: pd.DataFrame, lines: pd.DataFrame) -> None:
    for table in described.values():
        constant = table[table["variable"] != "math_score"]
        assert (constant["sd"] == 0.0).all(), constant
        assert (table.loc[table["variable"] == "math_score", "sd"] > 1).all()
    assert correlated[["r", "ci_low", "ci_high"]].isna().all().all(), correlated
    assert correlated["n"].tolist() == [7, 7, 7]
    assert lines[["slope", "intercept", "slope_se", "r"]].isna().all().all(), lines


def test_pandas_finds_no_spread_in_equal_values() -> None:
    _check(
        ds.describe_pandas(STUDENTS, k=1, groupings=GROUPINGS, variables=VARIABLES),
        c.correlate_pandas(STUDENTS, VARIABLES),
        d.relation_tables_pandas(STUDENTS)[1],
    )


def test_a_constant_outcome_gives_a_line_without_r() -> None:
    flat = STUDENTS.assign(ses=[0.0, 1.0, 2.0, 0.5, 1.5, 2.5, 1.0], math_score=[0.1] * 7)
    lines = d.relation_tables_pandas(flat)[1].set_index("sector")
    assert lines.loc["public", "slope"] == 0.0 and lines.loc["public", "slope_se"] == 0.0
    assert pd.isna(lines.loc["public", "r"])


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("partitions", [1, 3])
def test_spark_finds_no_spread_in_equal_values_however_partitioned(spark, partitions: int) -> None:
    frame = spark.createDataFrame(STUDENTS).repartition(partitions).cache()
    _check(
        ds.describe(frame, k=1, groupings=GROUPINGS, variables=VARIABLES),
        c.correlate(frame, VARIABLES),
        d.relation_tables(frame)[1],
    )
