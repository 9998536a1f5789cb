"""The students the analyses see, prepared with Spark from `cleaned` and `schools`.

- A student who sent several records (same school and student number) counts once: the latest
  received. Records without a student number cannot be matched and all count.
- Each student gets the school's `sector`, `school_size` and name; records of schools no longer
  in `schools` are set aside.
- `mean_ses` is the school's mean SES over its students in the data and `cses` SES centred on
  it. The mean is summed exactly (SES in units of 1e-9 as whole numbers), so it is the same to
  the last bit however Spark partitions the data; every model fit then repeats exactly.
"""

from __future__ import annotations

from fractions import Fraction

import pandas as pd
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from pipeline_lib.process.analysis.frame import MODEL_COLUMNS

SES_SCALE = 10**9  # SES is summed as whole multiples of 1e-9: exact, so independent of order
CATEGORICAL = ("school_id", "sector", "sex")


def mark(cleaned: DataFrame, schools: DataFrame) -> DataFrame:
    """`cleaned` with `__latest` (the record that counts for its student) and `__known` (its
    school is in `schools`), and the school's `name`, `sector` and `school_size`."""
    identified = F.col("student_ref").isNotNull()
    newest = Window.partitionBy("school_id", "student_ref").orderBy(
        F.col("received_at").desc_nulls_last(), F.col("submission_id").desc()
    )
    # Only identified records go through the window (a shuffle); the others all count.
    ranked = cleaned.where(identified).withColumn("__latest", F.row_number().over(newest) == 1)
    marked = cleaned.where(~identified).withColumn("__latest", F.lit(True)).unionByName(ranked)
    school = schools.select(
        "school_id",
        "name",
        "sector",
        F.col("size").cast("double").alias("school_size"),
        F.lit(True).alias("__known"),
    )
    joined = marked.join(F.broadcast(school), "school_id", "left")
    return joined.withColumn("__known", F.coalesce(F.col("__known"), F.lit(False)))


def counts(marked: DataFrame) -> tuple[int, int, int]:
    """(records, earlier records of a student set aside, records of unknown schools set aside)."""
    row = marked.agg(
        F.count(F.lit(1)),
        F.sum((~F.col("__latest")).cast("long")),
        F.sum((F.col("__latest") & ~F.col("__known")).cast("long")),
    ).first()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


def students(marked: DataFrame) -> DataFrame:
    """The records that count, with `mean_ses` and `cses`."""
    kept = marked.where(F.col("__latest") & F.col("__known")).drop("__latest", "__known")
    whole = F.round(F.col("ses") * SES_SCALE).cast("long")
    sums = kept.groupBy("school_id").agg(F.sum(whole).alias("__sum"), F.count("ses").alias("__n")).toPandas()
    # Exact rational arithmetic on the driver, then one correctly rounded double per school.
    mean = [
        float(Fraction(int(s), int(n) * SES_SCALE)) for s, n in zip(sums["__sum"], sums["__n"], strict=True)
    ]
    means = pd.DataFrame({"school_id": sums["school_id"], "mean_ses": mean})
    spark = marked.sparkSession
    means_df = spark.createDataFrame(means, "school_id string, mean_ses double")
    return kept.join(F.broadcast(means_df), "school_id").withColumn("cses", F.col("ses") - F.col("mean_ses"))


def model_frame(students: DataFrame) -> pd.DataFrame:
    """The students as pandas for the models: sorted by submission id (a fixed row order, so a
    fit does the same arithmetic on every rerun), text columns as categoricals."""
    table = students.select(*MODEL_COLUMNS).toArrow()
    table = table.take(pc.sort_indices(table, sort_keys=[("submission_id", "ascending")]))
    table = table.drop_columns(["submission_id"])
    for name in CATEGORICAL:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.dictionary_encode(table.column(name)))
    return table.to_pandas()
