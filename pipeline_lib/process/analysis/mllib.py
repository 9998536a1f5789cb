"""The prediction models on Spark MLlib, for data above `max_model_rows`: the same features
(`cv.columns`, encoded by Spark expressions), the same school-grouped folds (`cv.assign_folds`
from per-school counts), the same models (L2 logistic and ridge regression with the penalty of
the scikit-learn versions) and the same result types, with metrics from Spark aggregations.

Permutation importances use a seeded sample of each test fold collected to the driver, with
the fitted MLlib model's coefficients applied in numpy (a linear model: the same predictions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline_lib.process.analysis import classification, cv, regression
from pipeline_lib.process.analysis.frame import OUTCOME, require

ENGINE = "spark-mllib"


def school_counts(students: DataFrame) -> pd.Series:
    counts = students.groupBy("school_id").count().toPandas()
    return counts.set_index("school_id")["count"].sort_index()


def with_folds(students: DataFrame, school_folds: pd.Series) -> DataFrame:
    spark = students.sparkSession
    folds = spark.createDataFrame(
        pd.DataFrame({"school_id": school_folds.index.astype(str), "__fold": school_folds.to_numpy()}),
        "school_id string, __fold long",
    )
    return students.join(F.broadcast(folds), "school_id")


def spec_of(students: DataFrame) -> tuple[cv.Column, ...]:
    """`cv.columns` decided from Spark aggregates (which numeric fields have values, which miss some)."""
    present = [c for c in cv.NUMERIC_FEATURES if c in students.columns]
    row = students.agg(
        *[F.count(F.col(c)).alias(f"{c}__n") for c in present], F.count(F.lit(1)).alias("__rows")
    ).first()
    spec: list[cv.Column] = []
    for name in present:
        if row[f"{name}__n"] == 0:
            continue
        spec.append(cv.Column(name, name))
        if row[f"{name}__n"] < row["__rows"]:
            spec.append(cv.Column(f"{name}_missing", name, missing=True))
    for name in cv.CATEGORIES:
        if name in students.columns:
            spec += cv.category_columns(name)
    return tuple(spec)


def _expression(column: cv.Column, medians: dict[str, float]) -> SparkColumn:
    value = F.col(column.field)
    if column.missing:
        return value.isNull().cast("double")
    if column.value is None:
        return F.coalesce(value.cast("double"), F.lit(medians[column.field]))
    return F.coalesce((value == F.lit(column.value)).cast("double"), F.lit(0.0))


def _medians(train: DataFrame, spec: tuple[cv.Column, ...]) -> dict[str, float]:
    numeric = [c.field for c in spec if c.value is None and not c.missing]
    if not numeric:
        return {}
    row = train.agg(*[F.percentile(F.col(c).cast("double"), 0.5).alias(c) for c in numeric]).first()
    return {c: float(row[c]) if row[c] is not None else 0.0 for c in numeric}


def _assemble(df: DataFrame, spec: tuple[cv.Column, ...], medians: dict[str, float]) -> DataFrame:
    from pyspark.ml.functions import array_to_vector

    return df.withColumn("features", array_to_vector(F.array(*[_expression(c, medians) for c in spec])))


def _impute(X: np.ndarray, spec: tuple[cv.Column, ...], medians: dict[str, float]) -> np.ndarray:
    out = X.copy()
    for j, c in enumerate(spec):
        if c.value is None and not c.missing:
            out[np.isnan(out[:, j]), j] = medians[c.field]
    return out


def _split(
    data: DataFrame, spec: tuple[cv.Column, ...], fold: int
) -> tuple[DataFrame, DataFrame, dict[str, float], int, float]:
    """A fold's training and test rows, the training medians (to fill gaps), and the training
    rows' count and mean of `__y`."""
    train, test = data.where(F.col("__fold") != fold), data.where(F.col("__fold") == fold)
    medians = _medians(train, spec)
    n_train, mean = train.agg(F.count(F.lit(1)), F.avg("__y")).first()
    return train, test, medians, int(n_train), float(mean)


def _penalty(n_train: int) -> dict[str, Any]:
    """Spark ML options of the models: an L2 penalty of 1/n on `features`, as the scikit-learn
    versions have it."""
    return {
        "featuresCol": "features",
        "labelCol": "__y",
        "regParam": 1.0 / n_train,
        "elasticNetParam": 0.0,
        "standardization": True,
    }


def _fold_sizes(data: DataFrame, folds: int) -> pd.DataFrame:
    """`cv.fold_table` from Spark aggregates: per school its folds, then per fold the counts."""
    per_school = data.groupBy("school_id").agg(
        F.collect_set("__fold").alias("folds"), F.count(F.lit(1)).alias("n")
    )
    rows = []
    schools = per_school.toPandas()
    for fold in range(folds):
        in_test = schools["folds"].map(lambda s, f=fold: f in s)
        in_train = schools["folds"].map(lambda s, f=fold: any(x != f for x in s))
        n_test = int(data.where(F.col("__fold") == fold).count())
        rows.append(
            {
                "fold": fold,
                "n_train": int(schools["n"].sum()) - n_test,
                "n_test": n_test,
                "schools_train": int(in_train.sum()),
                "schools_test": int(in_test.sum()),
                "schools_in_both": int((in_train & in_test).sum()),
            }
        )
    return pd.DataFrame(rows)


def _sample(test: DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """About `rows` test rows, chosen by a seeded hash (independent of partitioning)."""
    total = test.count()
    if total > rows:
        bucket = F.abs(F.xxhash64(F.col("submission_id"), F.lit(seed))) % 1_000_000
        test = test.where(bucket < math.ceil(1_000_000 * rows / total))
    return test.toPandas().sort_values("submission_id", ignore_index=True)


def classify(
    students: DataFrame,
    school_folds: pd.Series,
    *,
    quantile: float = 0.25,
    seed: int = 0,
    permutation_rows: int = classification.PERMUTATION_ROWS,
) -> classification.ClassificationResult:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array

    require(0 < quantile < 1, f"the at-risk quantile must be between 0 and 1, got {quantile}")
    cut = float(students.agg(F.percentile(F.col(OUTCOME), quantile)).first()[0])
    data = with_folds(students, school_folds).withColumn("__y", (F.col(OUTCOME) < cut).cast("double"))
    totals = data.agg(F.count(F.lit(1)), F.sum("__y")).first()
    n, positives = int(totals[0]), int(totals[1] or 0)
    require(0 < positives < n, "every student is on the same side of the at-risk cut: nothing to predict")
    spec = spec_of(students)
    folds = int(school_folds.max()) + 1
    bins = classification.CALIBRATION_BINS
    counts, sum_p, sum_y = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    rows, drops = [], []
    evaluator = BinaryClassificationEvaluator(rawPredictionCol="__p", labelCol="__y", numBins=0)
    for fold in range(folds):
        train, test, medians, n_train, share = _split(data, spec, fold)
        require(0 < share < 1, f"the training schools of fold {fold} have only one class")
        model = LogisticRegression(maxIter=200, **_penalty(n_train)).fit(_assemble(train, spec, medians))
        scored = (
            model.transform(_assemble(test, spec, medians))
            .select("__y", vector_to_array("probability")[1].alias("__p"))
            .cache()
        )
        try:
            rows.append(_classification_metrics(scored, share, evaluator))
            by_bin = (
                scored.groupBy(F.least(F.floor(F.col("__p") * bins), F.lit(bins - 1)).cast("int").alias("b"))
                .agg(F.count(F.lit(1)).alias("n"), F.sum("__p").alias("p"), F.sum("__y").alias("y"))
                .toPandas()
            )
        finally:
            scored.unpersist()
        for r in by_bin.itertuples():
            counts[r.b], sum_p[r.b], sum_y[r.b] = counts[r.b] + r.n, sum_p[r.b] + r.p, sum_y[r.b] + r.y
        sample = _sample(
            test.select("submission_id", "__y", *{c.field for c in spec}), permutation_rows, seed + fold
        )
        if sample["__y"].nunique() == 2:
            X = _impute(cv.encode(sample, spec), spec, medians)
            drops.append(
                cv.permutation_drops(
                    _logistic(model.coefficients.toArray(), float(model.intercept)),
                    X,
                    sample["__y"].to_numpy() == 1,
                    spec,
                    classification.auc,
                    classification.PERMUTATION_REPEATS,
                    np.random.default_rng([seed, fold]),
                )
            )
    with np.errstate(invalid="ignore", divide="ignore"):
        calibration = classification.calibration_table(counts, sum_p / counts, sum_y / counts)
    return classification.ClassificationResult(
        engine=ENGINE,
        model=classification.MODEL,
        cut=cut,
        cut_quantile=quantile,
        prevalence=positives / n,
        n=n,
        n_schools=len(school_folds),
        features=cv.fields(spec),
        folds=pd.concat([_fold_sizes(data, folds), pd.DataFrame(rows)], axis=1),
        calibration=calibration,
        importances=cv.importance_table(cv.fields(spec), drops),
    )


def _logistic(weights: np.ndarray, intercept: float) -> Callable[[np.ndarray], np.ndarray]:
    """The fitted logistic model's probability as a numpy function of its (imputed) inputs."""
    return lambda X: 1 / (1 + np.exp(-(X @ weights + intercept)))


def _classification_metrics(scored: DataFrame, share: float, evaluator) -> dict[str, float]:
    """As `classification.fold_metrics`, by Spark aggregates over a scored test fold."""
    at_risk = F.col("__y") == 1
    flagged = F.col("__p") >= share
    r = scored.agg(
        F.sum(at_risk.cast("long")).alias("pos"),
        F.sum((~at_risk).cast("long")).alias("neg"),
        F.sum((at_risk & flagged).cast("long")).alias("tp"),
        F.sum((~at_risk & ~flagged).cast("long")).alias("tn"),
        F.avg((F.col("__p") - F.col("__y")) ** 2).alias("brier"),
        F.avg((F.lit(share) - F.col("__y")) ** 2).alias("bb"),
    ).first()
    pos, neg = int(r["pos"]), int(r["neg"])
    recalls = [r["tp"] / pos] if pos else []
    recalls += [r["tn"] / neg] if neg else []
    majority = share >= 0.5  # the baseline's one prediction
    base = [float(majority)] if pos else []
    base += [float(not majority)] if neg else []
    return {
        "auc": float(evaluator.evaluate(scored)) if pos and neg else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)),
        "brier": float(r["brier"]),
        "baseline_auc": 0.5,
        "baseline_balanced_accuracy": float(np.mean(base)),
        "baseline_brier": float(r["bb"]),
    }


def regress(students: DataFrame, school_folds: pd.Series) -> regression.RegressionResult:
    from pyspark.ml.regression import LinearRegression

    data = with_folds(students, school_folds).withColumn("__y", F.col(OUTCOME).cast("double"))
    spec = spec_of(students)
    folds = int(school_folds.max()) + 1
    rows = []
    sums = np.zeros(4)  # squared and absolute errors of model and baseline, over all folds
    for fold in range(folds):
        train, test, medians, n_train, mean = _split(data, spec, fold)
        model = LinearRegression(**_penalty(n_train)).fit(_assemble(train, spec, medians))
        residual = F.col("__y") - F.col("prediction")
        r = (
            model.transform(_assemble(test, spec, medians))
            .agg(
                F.count(F.lit(1)).alias("n"),
                F.sum(residual**2).alias("sse"),
                F.sum(F.abs(residual)).alias("sae"),
                F.sum((F.col("__y") - mean) ** 2).alias("bsse"),
                F.sum(F.abs(F.col("__y") - mean)).alias("bsae"),
                F.var_pop("__y").alias("var"),
            )
            .first()
        )
        n = int(r["n"])
        sums += [r["sse"], r["sae"], r["bsse"], r["bsae"]]
        rows.append(
            {
                "rmse": math.sqrt(r["sse"] / n),
                "mae": r["sae"] / n,
                "r2": 1 - r["sse"] / (r["var"] * n) if r["var"] else float("nan"),
                "baseline_rmse": math.sqrt(r["bsse"] / n),
                "baseline_mae": r["bsae"] / n,
            }
        )
    total = int(sum(school_counts(students)))
    return regression.RegressionResult(
        engine=ENGINE,
        model=regression.MODEL,
        n=total,
        n_schools=len(school_folds),
        features=cv.fields(spec),
        folds=pd.concat([_fold_sizes(data, folds), pd.DataFrame(rows)], axis=1),
        rmse=math.sqrt(sums[0] / total),
        mae=sums[1] / total,
        baseline_rmse=math.sqrt(sums[2] / total),
        baseline_mae=sums[3] / total,
    )
