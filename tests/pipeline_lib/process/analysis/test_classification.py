"""At-risk classification beats the majority baseline on informative data and not on noise,
with folds that never share a school."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.process.analysis import classification, cv
from pipeline_lib.process.analysis.base import AnalysisError
from pipeline_lib.process.analysis.classification import ClassificationResult
from tests.pipeline_lib.process.analysis import simulated


def _classify(students: pd.DataFrame, **options: object) -> ClassificationResult:
    folds = cv.assign_folds(students["school_id"].value_counts(), 5, seed=2)
    return classification.classify(students, folds, seed=2, **options)


@pytest.fixture(scope="module")
def informative() -> ClassificationResult:
    return _classify(simulated.students(12_000, 60, seed=8))


@pytest.fixture(scope="module")
def noise() -> ClassificationResult:
    return _classify(simulated.students(12_000, 60, seed=8, informative=False))


def test_on_informative_data_the_model_beats_the_majority_baseline(informative: ClassificationResult) -> None:
    auc, _ = informative.metric("auc")
    accuracy, _ = informative.metric("balanced_accuracy")
    assert informative.beats_baseline and auc > 0.65 and accuracy > 0.6
    assert (informative.folds["baseline_balanced_accuracy"] == 0.5).all()
    assert (informative.folds["brier"] < informative.folds["baseline_brier"]).all()


def test_on_noise_the_model_does_not_beat_the_baseline(noise: ClassificationResult) -> None:
    auc, _ = noise.metric("auc")
    assert not noise.beats_baseline
    assert abs(auc - 0.5) < 0.03


def test_the_folds_never_share_a_school(informative: ClassificationResult) -> None:
    folds = informative.folds
    assert (folds["schools_in_both"] == 0).all()
    assert folds["schools_test"].sum() == informative.n_schools == 60
    assert folds["n_test"].sum() == informative.n


def test_the_cut_is_the_quantile_and_about_that_share_is_at_risk(informative: ClassificationResult) -> None:
    assert informative.cut_quantile == 0.25
    assert informative.prevalence == pytest.approx(0.25, abs=0.001)
    labels, cut = classification.at_risk(pd.Series([1.0, 2.0, 3.0, 4.0, 5.0]), 0.5)
    assert cut == 3.0 and labels.tolist() == [True, True, False, False, False]


def test_calibration_bins_hold_every_student_and_follow_the_observed_rate(
    informative: ClassificationResult,
) -> None:
    bins = informative.calibration
    assert bins["n"].sum() == informative.n and len(bins) == classification.CALIBRATION_BINS
    filled = bins[bins["n"] >= 200]
    assert ((filled["mean_predicted"] - filled["observed_rate"]).abs() < 0.08).all()


def test_importances_rank_the_fields_the_score_was_made_of(informative: ClassificationResult) -> None:
    table = informative.importances.set_index("feature")
    assert set(table.index) == set(informative.features)
    assert table.loc["ses", "importance"] > 0.02
    assert table.loc["study_hours_week", "importance"] > 0.005
    # age and absences play no part in the simulated score
    assert abs(table.loc["age", "importance"]) < 0.005 and abs(table.loc["absences", "importance"]) < 0.005


def test_the_same_seed_gives_the_same_result() -> None:
    students = simulated.students(3_000, 30, seed=9)
    first, second = _classify(students), _classify(students)
    pd.testing.assert_frame_equal(first.folds, second.folds)
    pd.testing.assert_frame_equal(first.importances, second.importances)


def test_one_class_only_is_an_analysis_error() -> None:
    students = simulated.students(500, 10, seed=1).assign(math_score=50.0)
    with pytest.raises(AnalysisError, match="same side of the at-risk cut"):
        _classify(students)


def test_fold_metrics_of_a_perfect_ranking() -> None:
    y = np.array([True, True, False, False])
    metrics = classification.fold_metrics(y, np.array([0.9, 0.8, 0.2, 0.1]), threshold=0.5)
    assert metrics["auc"] == 1.0 and metrics["balanced_accuracy"] == 1.0
    assert metrics["baseline_auc"] == 0.5 and metrics["baseline_balanced_accuracy"] == 0.5


def test_auc_is_what_scikit_learn_computes_ties_included() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(2, 400))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        # Half the trials with few distinct scores: many ties, each counting half.
        p = rng.integers(0, 5, n) / 4 if trial % 2 else rng.random(n)
        assert classification.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert classification.auc(np.array([3, 7, 7]), np.array([0.9, 0.1, 0.2])) == 0.0  # 7 is positive


@pytest.mark.parametrize(("y", "p"), [([1, 1, 1], [0.1, 0.2, 0.3]), ([0, 1], [0.1, np.nan]), ([0, 1], [0.5])])
def test_auc_refuses_one_class_a_missing_score_or_unequal_lengths(y: list, p: list) -> None:
    with pytest.raises(ValueError, match="two classes and a finite score per row"):
        classification.auc(np.array(y), np.array(p))
