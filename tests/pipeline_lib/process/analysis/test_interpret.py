"""Interpretation sentences follow the numbers. (How documents are drawn: tests/pipeline_lib/views.)"""

from __future__ import annotations

from pipeline_lib.process.analysis import interpret, multilevel, ols
from pipeline_lib.process.analysis.base import Failure
from tests.pipeline_lib.process.analysis import simulated


def test_grouped_sentence_names_the_lowest_and_highest_shown_groups_and_the_hidden_ones() -> None:
    table = simulated.descriptive_stats(
        "math_score", {"public": (100, 48.0), "catholic": (80, 53.5), "private": (3, 70.0)}, "sector"
    )
    sentence = interpret.descriptives_grouped(table, "sector", k=5)
    assert "48.0 (public) to 53.5 (catholic)" in sentence
    assert "1 sector group of fewer than 5 students stay hidden" in sentence
    assert "70.0" not in sentence  # a hidden group's figure never reaches the sentence


def test_ols_sentence_says_lower_for_a_negative_slope() -> None:
    students = simulated.students(2_000, 20, seed=1)
    students["math_score"] = 60 - 3 * students["ses"] + students["math_score"] * 0.01
    sentence = interpret.ols(ols.fit_ols(students))
    assert "goes with 2.97 points lower math scores (95% CI -2.97 to -2.96" in sentence


def test_null_model_sentence_reports_the_icc_as_a_share() -> None:
    model = multilevel.NullModel(50.0, 0.1, 9.0, 27.0, 1.0, 1000, 10, "lbfgs", (), ())
    assert interpret.null_model(model).startswith("25% of the variance in math scores lies between schools")


def test_failure_sentence_carries_the_reason() -> None:
    sentence = interpret.failure("School effects", Failure("x", "no optimizer gave a usable REML fit"))
    assert sentence == "School effects: not computed, because no optimizer gave a usable REML fit."


def test_ordinals() -> None:
    assert [interpret.ordinal(n) for n in (1, 2, 3, 11, 12, 21, 25)] == [
        "1st",
        "2nd",
        "3rd",
        "11th",
        "12th",
        "21st",
        "25th",
    ]
