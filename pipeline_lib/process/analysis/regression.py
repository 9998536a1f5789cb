"""Score prediction: predict `math_score` from the other fields and school context, with
scikit-learn, cross-validated by school (the folds of `cv`): RMSE, MAE and R² of a ridge
regression against the mean-only baseline (each training fold's mean score).
`mllib.regress` fits the same model with Spark MLlib above `max_model_rows`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline_lib.process.analysis import cv
from pipeline_lib.process.analysis.frame import OUTCOME, require

MODEL = "ridge regression"


@dataclass(frozen=True)
class RegressionResult:
    engine: str
    model: str
    n: int
    n_schools: int
    features: tuple[str, ...]
    folds: pd.DataFrame  # per fold: sizes, schools, rmse, mae, r2 and the baseline's rmse, mae
    rmse: float  # over all out-of-fold predictions
    mae: float
    baseline_rmse: float
    baseline_mae: float

    @property
    def skill(self) -> tuple[float, float]:
        """Mean and standard error across folds of 1 - RMSE / baseline RMSE (0: no better)."""
        values = 1 - self.folds["rmse"].to_numpy(dtype=float) / self.folds["baseline_rmse"].to_numpy(
            dtype=float
        )
        se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
        return float(values.mean()), se

    @property
    def beats_baseline(self) -> bool:
        """The model's RMSE is below the baseline's by more than two standard errors."""
        mean, se = self.skill
        return bool(np.isfinite(se) and mean - 2 * se > 0)


def errors(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    residual = y - predicted
    return {"rmse": float(np.sqrt(np.mean(residual**2))), "mae": float(np.mean(np.abs(residual)))}


def fold_metrics(y: np.ndarray, predicted: np.ndarray, train_mean: float) -> dict[str, float]:
    """The model's RMSE, MAE and R² on a test fold, and the RMSE and MAE of the training mean."""
    model, baseline = errors(y, predicted), errors(y, np.full(len(y), train_mean))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(np.sum((y - predicted) ** 2)) / total if total > 0 else float("nan")
    return {**model, "r2": r2, "baseline_rmse": baseline["rmse"], "baseline_mae": baseline["mae"]}


def regress(students: pd.DataFrame, school_folds: pd.Series) -> RegressionResult:
    """Cross-validated prediction of `math_score` for `students` over the folds `school_folds`."""
    from sklearn.linear_model import Ridge

    y = students[OUTCOME].to_numpy(dtype=float)
    require(len(y) > 1, "score prediction needs at least two students")
    spec = cv.columns(students)
    X = cv.encode(students, spec)
    predicted, baseline = np.full(len(y), np.nan), np.full(len(y), np.nan)
    rows = []
    for _fold, train, test in cv.splits(students["school_id"], school_folds):
        model = cv.model_pipeline(Ridge(alpha=1.0))
        model.fit(X[train], y[train])
        predicted[test] = model.predict(X[test])
        baseline[test] = y[train].mean()
        rows.append(fold_metrics(y[test], predicted[test], float(y[train].mean())))
    folds = pd.concat([cv.fold_table(students["school_id"], school_folds), pd.DataFrame(rows)], axis=1)
    model_errors, baseline_errors = errors(y, predicted), errors(y, baseline)
    return RegressionResult(
        engine="scikit-learn",
        model=MODEL,
        n=len(y),
        n_schools=int(students["school_id"].nunique()),
        features=cv.fields(spec),
        folds=folds,
        rmse=model_errors["rmse"],
        mae=model_errors["mae"],
        baseline_rmse=baseline_errors["rmse"],
        baseline_mae=baseline_errors["mae"],
    )
