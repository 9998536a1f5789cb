"""A sample stratified by school, for the statsmodels models when the input is above
`max_model_rows`: every school keeps its share of students, so school-level estimates (mean SES,
random effects) stay comparable, and the same input and seed always give the same sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F


def quotas(counts: pd.Series, target: int) -> pd.Series:
    """Students to keep per school (index as `counts`): proportional to the school's size,
    rounded by largest remainder so they add up to exactly `target`; all of them if the total
    is at most `target`. Ties in the remainders go to the school listed first."""
    counts = counts.astype("int64")
    total = int(counts.sum())
    if total <= target:
        return counts.copy()
    exact = counts.to_numpy(dtype=float) * target / total
    kept = np.floor(exact).astype("int64")
    short = target - int(kept.sum())
    # Largest remainders first; a stable sort keeps the listed order among equal remainders.
    order = np.argsort(-(exact - kept), kind="stable")
    kept[order[:short]] += 1
    return pd.Series(kept, index=counts.index, name=counts.name)


def stratified_sample(
    df: DataFrame, target: int, seed: int, *, key: str = "school_id", row_id: str = "submission_id"
) -> DataFrame:
    """`df` cut to `target` rows stratified by `key` (see `quotas`). Within a school the rows
    kept are those with the smallest seeded hash of `row_id`: a pseudo-random choice that does
    not depend on how the data is partitioned."""
    counts = df.groupBy(key).count().toPandas().set_index(key)["count"].sort_index()
    if int(counts.sum()) <= target:
        return df
    keep = quotas(counts, target)
    spark: SparkSession = df.sparkSession
    keep_df = spark.createDataFrame(
        pd.DataFrame({key: keep.index.astype(str), "__quota": keep.to_numpy()}),
        f"{key} string, __quota long",
    )
    order = Window.partitionBy(key).orderBy(F.xxhash64(F.col(row_id), F.lit(seed)), F.col(row_id))
    ranked = df.join(F.broadcast(keep_df), key).withColumn("__rank", F.row_number().over(order))
    return ranked.where(F.col("__rank") <= F.col("__quota")).drop("__rank", "__quota")
