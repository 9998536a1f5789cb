"""Score prediction beats the mean-only baseline on informative data and not on noise."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib.process.analysis import cv, regression
from pipeline_lib.process.analysis.regression import RegressionResult
from tests.pipeline_lib.process.analysis import simulated


def _regress(informative: bool) -> RegressionResult:
    students = simulated.students(12_000, 60, seed=6, informative=informative)
    return regression.regress(students, cv.assign_folds(students["school_id"].value_counts(), 5, seed=3))


@pytest.fixture(scope="module")
def informative() -> RegressionResult:
    return _regress(True)


def test_on_informative_data_the_model_beats_the_mean(informative: RegressionResult) -> None:
    assert informative.beats_baseline
    assert informative.rmse < 0.9 * informative.baseline_rmse and informative.mae < informative.baseline_mae
    assert (informative.folds["rmse"] < informative.folds["baseline_rmse"]).all()
    assert (informative.folds["schools_in_both"] == 0).all()


def test_on_noise_the_model_does_not_beat_the_mean() -> None:
    noise = _regress(False)
    skill, _ = noise.skill
    assert not noise.beats_baseline and abs(skill) < 0.01


def test_pooled_errors_agree_with_the_folds(informative: RegressionResult) -> None:
    folds = informative.folds
    pooled = np.sqrt((folds["rmse"] ** 2 * folds["n_test"]).sum() / folds["n_test"].sum())
    assert informative.rmse == pytest.approx(pooled, rel=1e-9)
    assert informative.n == folds["n_test"].sum() == 12_000


def test_fold_metrics_against_a_hand_computed_example() -> None:
    y, predicted = np.array([1.0, 2.0, 3.0, 6.0]), np.array([1.0, 3.0, 3.0, 4.0])
    metrics = regression.fold_metrics(y, predicted, train_mean=2.0)
    assert metrics["rmse"] == pytest.approx(np.sqrt(5 / 4)) and metrics["mae"] == pytest.approx(3 / 4)
    assert metrics["baseline_rmse"] == pytest.approx(np.sqrt(18 / 4)) and metrics[
        "baseline_mae"
    ] == pytest.approx(6 / 4)
    assert metrics["r2"] == pytest.approx(1 - 5 / 14)
