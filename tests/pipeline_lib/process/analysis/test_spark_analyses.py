"""The Spark analyses (descriptives, correlations, the stratified sample, MLlib models) agree
with the same statistics computed independently in pandas/numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from pipeline_lib.process import inputs
from pipeline_lib.process import job as process_job
from pipeline_lib.process.analysis import (
    classification,
    correlations,
    cv,
    descriptives,
    mllib,
    regression,
    sampling,
)
from pipeline_lib.process.analysis.frame import NUMERIC
from tests.pipeline_lib.process.analysis import simulated

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    frame = simulated.students(6_000, 40, seed=13)
    # A small sex group, to see it marked below k.
    frame.loc[frame.index[:3], "sex"] = "other"
    frame.loc[frame.index[3:], "sex"] = frame.loc[frame.index[3:], "sex"].replace("other", "male")
    return frame


@pytest.fixture(scope="module")
def frame(spark: SparkSession, students: pd.DataFrame) -> DataFrame:
    return spark.createDataFrame(students).localCheckpoint(eager=True)


@pytest.fixture(scope="module")
def described(frame: DataFrame) -> dict[str, pd.DataFrame]:
    return descriptives.describe(frame, k=5)


def test_overall_descriptives_match_pandas(
    described: dict[str, pd.DataFrame], students: pd.DataFrame
) -> None:
    overall = described["overall"].set_index("variable")
    assert list(overall.index) == list(NUMERIC)
    for v in NUMERIC:
        values = students[v].dropna()
        row = overall.loc[v]
        assert row["n"] == len(values)
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["sd"] == pytest.approx(values.std(ddof=1), rel=1e-9)
        assert (row["min"], row["max"]) == (values.min(), values.max())
        expected = np.quantile(values, [0.25, 0.5, 0.75])
        np.testing.assert_allclose([row["q1"], row["median"], row["q3"]], expected, rtol=1e-12)


def test_grouped_descriptives_match_pandas_and_mark_small_groups(
    described: dict[str, pd.DataFrame], students: pd.DataFrame
) -> None:
    by_sex = described["by_sex"]
    math = by_sex[by_sex["variable"] == "math_score"].set_index("sex")
    expected = students.groupby("sex")["math_score"].agg(["size", "mean", "median"])
    assert math["n"].to_dict() == expected["size"].to_dict()
    np.testing.assert_allclose(math.loc[expected.index, "mean"], expected["mean"], rtol=1e-12)
    np.testing.assert_allclose(math.loc[expected.index, "median"], expected["median"], rtol=1e-12)
    assert math.loc["other", "below_k"] and not math.loc["female", "below_k"]
    by_school = described["by_school"]
    assert by_school["school_id"].nunique() == 40 and len(by_school) == 40 * len(NUMERIC)
    minority = described["by_minority"]
    assert set(minority["minority"]) == {True, False}


def test_quartiles_from_memory_equal_sparks_exact_percentiles(
    frame: DataFrame, students: pd.DataFrame, described: dict[str, pd.DataFrame]
) -> None:
    from_pandas = descriptives.describe(frame, k=5, in_memory=students)
    for scope, table in described.items():
        pd.testing.assert_frame_equal(
            table.drop(columns=["mean", "sd"]),
            from_pandas[scope].drop(columns=["mean", "sd"]),
            check_exact=False,
            rtol=1e-12,
        )


def test_correlations_match_numpy_on_pairwise_complete_rows(frame: DataFrame, students: pd.DataFrame) -> None:
    pairs = correlations.correlate(frame).set_index(["a", "b"])
    assert len(pairs) == len(NUMERIC) * (len(NUMERIC) - 1) // 2
    for (a, b), row in pairs.iterrows():
        both = students[[a, b]].dropna()
        assert row["n"] == len(both)
        assert row["r"] == pytest.approx(np.corrcoef(both[a], both[b])[0, 1], abs=1e-9)
        assert row["ci_low"] < row["r"] < row["ci_high"]
    assert pairs.loc[("ses", "math_score"), "r"] > 0.3


def test_the_stratified_sample_keeps_each_schools_share_and_is_repeatable(
    frame: DataFrame, students: pd.DataFrame
) -> None:
    first = sampling.stratified_sample(frame, 1_500, seed=4).toPandas()
    again = sampling.stratified_sample(frame, 1_500, seed=4).toPandas()
    assert len(first) == 1_500
    assert sorted(first["submission_id"]) == sorted(again["submission_id"])
    expected = sampling.quotas(students["school_id"].value_counts().sort_index(), 1_500)
    assert first["school_id"].value_counts().sort_index().to_dict() == expected[expected > 0].to_dict()
    other_seed = sampling.stratified_sample(frame, 1_500, seed=5).toPandas()
    assert set(other_seed["submission_id"]) != set(first["submission_id"])
    assert sampling.stratified_sample(frame, 10_000, seed=4) is frame  # nothing to cut


def test_mllib_classification_agrees_with_scikit_learn(frame: DataFrame, students: pd.DataFrame) -> None:
    folds = cv.assign_folds(students["school_id"].value_counts(), 5, seed=1)
    spark_result = mllib.classify(frame, folds, seed=1)
    local = classification.classify(students, folds, seed=1)
    assert spark_result.engine == "spark-mllib" and spark_result.beats_baseline
    assert spark_result.cut == pytest.approx(local.cut, rel=1e-12)
    assert spark_result.folds["schools_in_both"].eq(0).all()
    pd.testing.assert_frame_equal(spark_result.folds.iloc[:, :6], local.folds.iloc[:, :6])
    np.testing.assert_allclose(spark_result.folds["auc"], local.folds["auc"], atol=0.005)
    assert spark_result.calibration["n"].sum() == len(students)
    assert spark_result.importances.iloc[0]["feature"] == local.importances.iloc[0]["feature"] == "ses"


def test_mllib_regression_agrees_with_scikit_learn(frame: DataFrame, students: pd.DataFrame) -> None:
    folds = cv.assign_folds(students["school_id"].value_counts(), 5, seed=1)
    spark_result = mllib.regress(frame, folds)
    local = regression.regress(students, folds)
    assert spark_result.engine == "spark-mllib" and spark_result.beats_baseline
    assert spark_result.rmse == pytest.approx(local.rmse, rel=0.002)
    assert spark_result.baseline_rmse == pytest.approx(local.baseline_rmse, rel=1e-9)
    np.testing.assert_allclose(spark_result.folds["baseline_mae"], local.folds["baseline_mae"], rtol=1e-9)


def test_school_means_are_exact_and_the_model_frame_is_sorted(
    spark: SparkSession, students: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sent to the driver in three tasks or more, whatever the partitions: the rows come out the same.
    monkeypatch.setattr(inputs, "MODEL_FRAME_TASK_ROWS", len(students) // 3)
    records = simulated.cleaned_records(students).sample(frac=1, random_state=1)
    schema = process_job.CLEANED_SCHEMA
    cleaned = spark.createDataFrame(records[schema.names], schema)
    schools = spark.createDataFrame(simulated.schools(40, seed=13))

    def frame_of(partitions: int) -> pd.DataFrame:
        marked = inputs.mark(cleaned.repartition(partitions), schools)
        assert inputs.counts(marked) == (len(students), 0, 0)
        return inputs.model_frame(inputs.students(marked), len(students))

    frame = frame_of(3)
    expected = students.sort_values("submission_id", ignore_index=True)
    np.testing.assert_array_equal(frame["math_score"], expected["math_score"])
    means = expected.groupby("school_id")["ses"].transform("mean")
    np.testing.assert_allclose(frame["mean_ses"], means, rtol=0, atol=1e-9)
    assert isinstance(frame["school_id"].dtype, pd.CategoricalDtype) and "submission_id" not in frame
    pd.testing.assert_frame_equal(frame, frame_of(5))  # the same to the last bit, however partitioned
