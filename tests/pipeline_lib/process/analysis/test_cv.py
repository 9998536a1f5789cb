"""School-grouped folds, the shared feature encoding and permutation importances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.process.analysis import cv
from pipeline_lib.process.analysis.base import AnalysisError
from pipeline_lib.process.analysis.imputer import MedianImputer
from tests.pipeline_lib.process.analysis import simulated


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    return simulated.students(5_000, 37, seed=4)


def test_every_school_is_in_exactly_one_fold_and_folds_are_about_equal(students: pd.DataFrame) -> None:
    sizes = students["school_id"].value_counts()
    folds = cv.assign_folds(sizes, 5, seed=1)
    assert sorted(folds.index) == sorted(sizes.index) and folds.index.is_unique
    assert set(folds) == set(range(5))
    load = sizes.groupby(folds.reindex(sizes.index).to_numpy()).sum()
    assert load.max() - load.min() <= sizes.max()


def test_folds_depend_on_the_seed_only(students: pd.DataFrame) -> None:
    sizes = students["school_id"].value_counts()
    shuffled = sizes.sample(frac=1, random_state=3)
    assert cv.assign_folds(sizes, 5, seed=1).equals(cv.assign_folds(shuffled, 5, seed=1))
    assert not cv.assign_folds(sizes, 5, seed=1).equals(cv.assign_folds(sizes, 5, seed=2))


def test_no_school_is_ever_in_both_train_and_test(students: pd.DataFrame) -> None:
    folds = cv.assign_folds(students["school_id"].value_counts(), 5, seed=1)
    seen_in_test = []
    for _fold, train, test in cv.splits(students["school_id"], folds):
        train_schools = set(students["school_id"].iloc[train])
        test_schools = set(students["school_id"].iloc[test])
        assert not train_schools & test_schools
        assert len(train) + len(test) == len(students)
        seen_in_test += list(test)
    assert sorted(seen_in_test) == list(range(len(students)))  # every row tested exactly once
    table = cv.fold_table(students["school_id"], folds)
    assert (table["schools_in_both"] == 0).all() and table["n_test"].sum() == len(students)


def test_fewer_than_three_schools_cannot_be_cross_validated() -> None:
    with pytest.raises(AnalysisError, match="at least 3 schools"):
        cv.n_folds(2)
    assert cv.n_folds(4) == 4 and cv.n_folds(400) == 5


def test_encoding_keeps_missing_numbers_for_the_imputer_and_one_hots_contract_categories() -> None:
    frame = pd.DataFrame(
        {
            "ses": [0.5, -1.0],
            "age": [np.nan, 12.0],
            "study_hours_week": [np.nan, np.nan],
            "sex": ["female", "other"],
            "minority": [True, False],
            "sector": ["private", None],
        }
    )
    spec = cv.columns(frame)
    names = [c.name for c in spec]
    assert "study_hours_week" not in names  # no value at all: not a feature
    assert names[:3] == ["ses", "age", "age_missing"]
    X = cv.encode(frame, spec)
    row = dict(zip(names, X[0], strict=True))
    assert np.isnan(row["age"]) and row["age_missing"] == 1.0
    assert row["sex=female"] == 1.0 and row["sex=male"] == 0.0 and row["minority=yes"] == 1.0
    second = dict(zip(names, X[1], strict=True))
    assert sum(second[f"sector={s}"] for s in ("public", "catholic", "private")) == 0  # missing sector
    assert cv.fields(spec) == ("ses", "age", "sex", "minority", "sector")


def test_the_median_imputer_fills_with_the_training_median() -> None:
    train = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0]])
    imputer = MedianImputer().fit(train)
    np.testing.assert_array_equal(imputer.transform(np.array([[np.nan, np.nan]])), [[2.0, 6.0]])


def test_permutation_moves_a_one_hot_field_as_one_and_finds_the_useful_field() -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    frame = pd.DataFrame({"ses": rng.normal(size=n), "sex": rng.choice(["female", "male"], n)})
    spec = cv.columns(frame)
    X = cv.encode(frame, spec)
    y = frame["ses"].to_numpy() + rng.normal(0, 0.1, n)

    def predict(m: np.ndarray) -> np.ndarray:
        assert ((m[:, 1:].sum(axis=1)) == 1).all()  # each row keeps exactly one sex
        return m[:, 0]

    def score(truth: np.ndarray, predicted: np.ndarray) -> float:
        return -float(np.mean((truth - predicted) ** 2))

    drops = cv.permutation_drops(predict, X, y, spec, score, repeats=3, rng=rng)
    assert drops.shape == (2, 3)
    assert drops[0].min() > 1.0 and np.allclose(drops[1], 0)
    table = cv.importance_table(cv.fields(spec), [drops])
    assert list(table["feature"]) == ["ses", "sex"]


def test_a_column_without_any_value_in_training_is_filled_with_zero() -> None:
    imputer = MedianImputer().fit(np.array([[np.nan, 1.0], [np.nan, 3.0]]))
    np.testing.assert_array_equal(imputer.transform(np.array([[np.nan, np.nan]])), [[0.0, 2.0]])
