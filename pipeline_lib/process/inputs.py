"""The students the analyses see, prepared from `cleaned` and `schools` with Spark, or (the
`*_pandas` twins, for inputs the engine choice keeps to memory) with pandas, to the same rows.

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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from pipeline_lib.process.analysis.frame import MODEL_COLUMNS

SES_SCALE = 10**9  # SES is summed as whole multiples of 1e-9: exact, so independent of order
CATEGORICAL = ("school_id", "sector", "sex")


def mark(cleaned: DataFrame, schools: DataFrame) -> DataFrame:
    """`cleaned` with `__latest` (the record that counts for its student) and `__known` (its
    school is in `schools`, one row per id as `run.read_schools` gives), and the school's `name`,
    `sector` and `school_size`."""
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
    means = exact_means(sums)
    spark = marked.sparkSession
    means_df = spark.createDataFrame(means, "school_id string, mean_ses double")
    return kept.join(F.broadcast(means_df), "school_id").withColumn("cses", F.col("ses") - F.col("mean_ses"))


def exact_means(sums: pd.DataFrame) -> pd.DataFrame:
    """school_id, mean_ses from each school's `__sum` of SES in units of 1/SES_SCALE and `__n`
    values: exact rational arithmetic, then one correctly rounded double per school."""
    mean = [
        float(Fraction(int(s), int(n) * SES_SCALE)) if n else None
        for s, n in zip(sums["__sum"], sums["__n"], strict=True)
    ]
    return pd.DataFrame({"school_id": sums["school_id"], "mean_ses": pd.Series(mean, dtype=float)})


# Rows of the model frame one Spark task sends to the driver. A task's result larger than a
# message goes through the block manager; with 3,000,000 students (a sample of 2,000,000 over the
# 4 shuffle partitions of local[2]) results of ~100 MB each were lost there ("TaskResultLost")
# under a 1 GB driver. 250,000 rows of the model's columns are about 20 MB.
MODEL_FRAME_TASK_ROWS = 250_000


def model_frame(students: DataFrame, rows: int) -> pd.DataFrame:
    """The students (about `rows` of them) as pandas for the models: sorted by submission id (a
    fixed row order, so a fit does the same arithmetic on every rerun), text columns as
    categoricals. Sent to the driver in tasks of at most about MODEL_FRAME_TASK_ROWS rows."""
    columns = students.select(*MODEL_COLUMNS)
    tasks = -(-rows // MODEL_FRAME_TASK_ROWS)
    if tasks > 1:
        columns = columns.repartition(tasks)
    return _model_frame(columns.toArrow())


def _model_frame(table: pa.Table) -> pd.DataFrame:
    table = table.take(pc.sort_indices(table, sort_keys=[("submission_id", "ascending")]))
    table = table.drop_columns(["submission_id"])
    for name in CATEGORICAL:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.dictionary_encode(table.column(name)))
    return table.to_pandas()


# -- the pandas twins: the same rows from frames in memory ----------------------------------------


def mark_pandas(cleaned: pd.DataFrame, schools: pd.DataFrame) -> pd.DataFrame:
    """As `mark`, of pandas frames (`schools` as `run.read_schools` gives it: one row per id)."""
    newest_first = cleaned.sort_values(
        ["received_at", "submission_id"], ascending=False, na_position="last", kind="stable"
    )
    identified = newest_first[newest_first["student_ref"].notna()]
    latest = set(identified.drop_duplicates(["school_id", "student_ref"], keep="first")["submission_id"])
    marked = cleaned.assign(__latest=cleaned["student_ref"].isna() | cleaned["submission_id"].isin(latest))
    school = schools[["school_id", "name", "sector", "size"]].rename(columns={"size": "school_size"})
    school = school.assign(school_size=school["school_size"].astype(float), __known=True)
    joined = marked.merge(school, on="school_id", how="left")
    return joined.assign(__known=joined["__known"].eq(True))


def counts_pandas(marked: pd.DataFrame) -> tuple[int, int, int]:
    """As `counts`."""
    latest, known = marked["__latest"], marked["__known"]
    return len(marked), int((~latest).sum()), int((latest & ~known).sum())


def round_half_away(values: np.ndarray) -> np.ndarray:
    """Whole numbers as Spark's round gives them: half away from zero, decided on the value itself.
    floor(|x| + 0.5) is not: the addition rounds, so 0.49999999999999994 became 1."""
    whole = np.trunc(values)
    return whole + np.trunc(2 * (values - whole))  # both steps exact for |x| < 2**52


def students_pandas(marked: pd.DataFrame) -> pd.DataFrame:
    """As `students`: the records that count, with `mean_ses` and `cses`, summed exactly alike."""
    kept = marked[marked["__latest"] & marked["__known"]].drop(columns=["__latest", "__known"])
    ses = kept["ses"].to_numpy(dtype=float) * SES_SCALE
    whole = pd.Series(round_half_away(ses), index=kept.index).astype("Int64")
    grouped = whole.groupby(kept["school_id"], sort=False)
    sums = pd.DataFrame({"__sum": grouped.sum(), "__n": grouped.count()}).reset_index()
    means = exact_means(sums)
    kept = kept.merge(means, on="school_id", how="inner")
    return kept.assign(cses=kept["ses"] - kept["mean_ses"]).reset_index(drop=True)


def model_frame_pandas(students: pd.DataFrame) -> pd.DataFrame:
    """As `model_frame`."""
    return _model_frame(pa.Table.from_pandas(students[list(MODEL_COLUMNS)], preserve_index=False))
