"""What the prediction models share: their features, encoded the same way for scikit-learn
and Spark MLlib, cross-validation folds grouped by school, so no school is ever in both the
training and the test part of a fold (the model must predict for schools it has not seen, as
it would for a new school), and permutation importances of the input fields."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline_lib.contract.fields import SECTORS, SEXES
from pipeline_lib.process.analysis.frame import require

# Student fields and school context; `school_id` itself is never a feature (grouped CV).
NUMERIC_FEATURES = ("ses", "age", "study_hours_week", "absences", "mean_ses", "school_size")
# Categories come from the data contract, not from the data, so every fold encodes alike.
CATEGORIES: dict[str, tuple[object, ...]] = {"sex": SEXES, "minority": (True, False), "sector": SECTORS}
MAX_FOLDS = 5
MIN_SCHOOLS = 3


@dataclass(frozen=True)
class Column:
    """One column of the model matrix: `field` is the input field it comes from; `value` is
    the category it indicates (one-hot), or None for the field's own number; `missing` marks
    the column that says the number was missing (imputed)."""

    name: str
    field: str
    value: object = None
    missing: bool = False


def columns(students: pd.DataFrame) -> tuple[Column, ...]:
    """The model matrix's columns for this data: numeric features with at least one value (and
    a missing indicator where some are missing), then one-hot categories."""
    found: list[Column] = []
    for name in NUMERIC_FEATURES:
        if name not in students or not students[name].notna().any():
            continue
        found.append(Column(name, name))
        if students[name].isna().any():
            found.append(Column(f"{name}_missing", name, missing=True))
    for name in CATEGORIES:
        if name in students:
            found += category_columns(name)
    return tuple(found)


def category_columns(name: str) -> list[Column]:
    """One-hot columns of a categorical field, one per category of the contract."""
    return [Column(f"{name}={_label(v)}", name, value=v) for v in CATEGORIES[name]]


def encode(students: pd.DataFrame, spec: tuple[Column, ...]) -> np.ndarray:
    """The model matrix (float64; numeric values stay NaN where missing, for the imputer)."""
    out = np.empty((len(students), len(spec)))
    for j, column in enumerate(spec):
        values = students[column.field]
        if column.missing:
            out[:, j] = values.isna().to_numpy(dtype=float)
        elif column.value is None:
            out[:, j] = values.to_numpy(dtype=float, na_value=np.nan)
        else:
            out[:, j] = (values == column.value).fillna(False).to_numpy(dtype=float)
    return out


def fields(spec: tuple[Column, ...]) -> tuple[str, ...]:
    """The input fields behind the model's columns, in order."""
    return tuple(dict.fromkeys(c.field for c in spec))


def _label(value: object) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def n_folds(n_schools: int, wanted: int = MAX_FOLDS) -> int:
    """Folds for `n_schools`: `wanted`, or one school per fold when there are fewer schools."""
    require(
        n_schools >= MIN_SCHOOLS,
        f"school-grouped cross-validation needs at least {MIN_SCHOOLS} schools; the data has {n_schools}",
    )
    return min(wanted, n_schools)


def assign_folds(school_sizes: pd.Series, folds: int, seed: int) -> pd.Series:
    """Fold number (0..folds-1) per school (the index of `school_sizes`, whose values are
    student counts). Schools are shuffled by `seed`, then placed largest first into the fold
    with the fewest students so far, so folds are about equally large."""
    require(len(school_sizes) >= folds, f"{folds} folds need at least {folds} schools")
    names = np.array(sorted(school_sizes.index.astype(str)), dtype=object)
    np.random.default_rng(seed).shuffle(names)
    sizes = school_sizes.rename(index=str).reindex(names).to_numpy()
    order = np.argsort(-sizes, kind="stable")
    load = np.zeros(folds, dtype="int64")
    fold = np.empty(len(names), dtype="int64")
    for i in order:
        target = int(np.argmin(load))  # the first of the least loaded folds
        fold[i] = target
        load[target] += sizes[i]
    return pd.Series(fold, index=pd.Index(names, name="school_id"), name="fold").sort_index()


def _row_folds(groups: pd.Series, school_folds: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(per row: its school's number among the schools present, its fold); -1 for a school
    without a fold. Works on codes, not on a million school names."""
    codes, schools = pd.factorize(groups, sort=False)
    fold_of_school = school_folds.reindex(pd.Index(schools).astype(str)).fillna(-1).to_numpy(dtype="int64")
    return codes, fold_of_school[codes]


def splits(groups: pd.Series, school_folds: pd.Series) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(fold, train positions, test positions) for rows whose school is `groups`."""
    _, row_fold = _row_folds(groups, school_folds)
    for fold in range(int(school_folds.max()) + 1):
        test = row_fold == fold
        yield fold, np.flatnonzero(~test), np.flatnonzero(test)


def fold_table(groups: pd.Series, school_folds: pd.Series) -> pd.DataFrame:
    """Per fold: rows and schools in train and test, and schools found in both (always 0;
    computed from the actual row sets, a check that is stored with the result)."""
    codes, _ = _row_folds(groups, school_folds)
    rows = []
    for fold, train, test in splits(groups, school_folds):
        train_schools, test_schools = np.unique(codes[train]), np.unique(codes[test])
        rows.append(
            {
                "fold": fold,
                "n_train": len(train),
                "n_test": len(test),
                "schools_train": len(train_schools),
                "schools_test": len(test_schools),
                "schools_in_both": len(np.intersect1d(train_schools, test_schools)),
            }
        )
    return pd.DataFrame(rows)


def permutation_drops(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    spec: tuple[Column, ...],
    score: Callable[[np.ndarray, np.ndarray], float],
    repeats: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Score lost when one input field is shuffled across rows (all of its columns together, so
    a one-hot field moves as one): an array of fields x repeats."""
    base = score(y, predict(X))
    names = fields(spec)
    drops = np.empty((len(names), repeats))
    for i, name in enumerate(names):
        cols = [j for j, c in enumerate(spec) if c.field == name]
        for r in range(repeats):
            shuffled = X.copy()
            shuffled[:, cols] = X[rng.permutation(len(X))][:, cols]
            drops[i, r] = base - score(y, predict(shuffled))
    return drops


def importance_table(names: tuple[str, ...], per_fold: list[np.ndarray]) -> pd.DataFrame:
    """Mean and SD of each field's score drop over every fold and repeat, largest first."""
    if not per_fold:
        return pd.DataFrame({"feature": list(names), "importance": np.nan, "sd": np.nan})
    drops = np.concatenate(per_fold, axis=1)
    table = pd.DataFrame(
        {"feature": list(names), "importance": drops.mean(axis=1), "sd": drops.std(axis=1, ddof=1)}
    )
    return table.sort_values(["importance", "feature"], ascending=[False, True], ignore_index=True)


def model_pipeline(estimator):  # -> sklearn Pipeline
    """Median imputation (fitted on the training fold), standardisation, then `estimator`."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pipeline_lib.process.analysis.imputer import MedianImputer

    return make_pipeline(MedianImputer(), StandardScaler(), estimator)
