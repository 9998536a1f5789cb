"""A small sample of the work the clean and process steps give Spark, run where a Spark's first jobs
should be paid for before a run waits on them: the class-data archive's build (its classes) and the
warm Spark's warm-up (its Python workers, generated code and registered data source)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession


def sample_work(spark: SparkSession) -> None:
    """Jobs of the kinds the clean and process steps run: Arrow batches through Python, text
    expressions, windows, grouping with quantiles, a join, a checkpoint, results to the driver."""
    import pyarrow as pa
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def through_python(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from batches

    frame = spark.range(0, 20_000, 1, 2).selectExpr(
        "cast(id as string) as submission_id",
        "concat('S', cast(id % 37 as string)) as school_id",
        "cast(id % 101 as double) as score",
        "id % 3 = 0 as consent",
        "timestamp_seconds(id) as submitted_at",
    )
    frame = frame.mapInArrow(through_python, frame.schema).localCheckpoint(eager=True)
    cleaned = frame.withColumn("name", F.upper(F.trim(F.regexp_replace("submission_id", "[^0-9]", ""))))
    ranked = cleaned.withColumn(
        "rank", F.row_number().over(Window.partitionBy("school_id").orderBy(F.desc("submitted_at")))
    )
    summary = ranked.groupBy("school_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.percentile_approx("score", [0.25, 0.5, 0.75]).alias("quartiles"),
        F.avg("score").alias("mean"),
        F.collect_list("submission_id").alias("ids"),
    )
    summary.join(cleaned.select("school_id").distinct(), "school_id").toArrow()
    spark.createDataFrame(pa.table({"a": [1, 2], "b": ["x", "y"]}).to_pandas()).toPandas()
