"""Primary and complementary suppression: which cells are hidden, why, and deterministically."""

from __future__ import annotations

import math

import pandas as pd

from pipeline_lib.process.analysis import classification, cv, model_results, ols
from pipeline_lib.process.analysis.descriptive_results import Stamp
from pipeline_lib.process.analysis.frame import category_sizes
from pipeline_lib.process.disclosure import margins, protect, suppression
from pipeline_lib.process.disclosure.cells import STUDENTS, CellKey
from tests.pipeline_lib.process.analysis import simulated
from tests.pipeline_lib.process.disclosure import population

SCHOOLS = [1, 3, 7, 12, 2, 30, 40, 9, 5, 6, 25, 8]


def _school(layout, school_id: str) -> CellKey:
    return next(k for k in layout.cells if ("school_id", school_id) in k.group and k.population == STUDENTS)


def test_a_group_under_k_is_hidden_as_small_and_an_unreadable_count_too() -> None:
    layout = margins.extract(population.documents(population.students(SCHOOLS)))
    lone = _school(layout, "S0000")
    layout.cells[_school(layout, "S0003")].n = math.nan
    hidden = suppression.primary(layout, 5)
    assert hidden[lone] == "small"
    assert hidden[_school(layout, "S0003")] == "small"
    assert _school(layout, "S0005") not in hidden


def test_quantiles_are_shown_only_for_groups_of_at_least_k_quantiles() -> None:
    layout = margins.extract(population.documents(population.students(SCHOOLS)))
    rows = suppression.quantiles_hidden(layout, 10)
    assert set(layout.cells[_school(layout, "S0007")].quantile_rows) <= rows  # 9 students
    assert not set(layout.cells[_school(layout, "S0003")].quantile_rows) & rows  # 12 students


def test_a_lone_hidden_cell_of_a_margin_gets_a_complementary_one() -> None:
    layout = margins.extract(population.documents(population.students(SCHOOLS)))
    hidden = suppression.complementary(layout, suppression.primary(layout, 5), 5)
    for margin in layout.margins:
        members = [margin.total, *margin.parts]
        assert sum(m in hidden for m in members) != 1, margin.total.label
    assert "complementary" in hidden.values()


def test_the_complement_is_the_smallest_part_of_at_least_2k_minus_1_students() -> None:
    layout = margins.extract(population.documents(population.students([1, 5, 8, 9, 12, 20])))
    # Catholic schools: S0001 (5) and S0004 (12); public: S0000 (1) and S0003 (9).
    hidden = suppression.complementary(layout, {_school(layout, "S0000"): "small"}, 5)
    assert hidden[_school(layout, "S0003")] == "complementary"
    assert _school(layout, "S0001") not in hidden  # 5 students: too few to cover a count 1..4


def test_suppression_is_deterministic() -> None:
    frame = population.students(SCHOOLS)
    runs = [population.protected(frame)[1] for _ in range(2)]
    assert runs[0].hidden == runs[1].hidden and runs[0].row_reasons() == runs[1].row_reasons()


def _stamp(frame: pd.DataFrame) -> Stamp:
    return Stamp(
        run_id="run",
        computed_at=population.WHEN,
        n_input=len(frame),
        input_high_water_mark=0,
        k_min_group=5,
        seed=1,
    )


def test_a_model_term_never_shows_the_count_of_a_hidden_group() -> None:
    # Sectors public 55, catholic 22, private 3: private is small, so catholic is hidden beside it;
    # the OLS term sector[catholic] shows min(catholic, public) = 22, catholic's count.
    frame = population.students([30, 12, 2, 25, 10, 1])
    stamp = _stamp(frame)
    coefficients = model_results.ols_document(ols.fit_ols(frame), stamp, category_sizes(frame), sampled=False)
    docs = [*population.documents(frame), coefficients]
    protection = protect(docs, k=5)
    catholic = CellKey(frozenset({("sector", "catholic")}), STUDENTS)
    assert protection.hidden[catholic] == "complementary"
    table = next(t for t in coefficients.tables if "term" in t.columns)
    rows = {row[table.columns.index("term")]: i for i, row in enumerate(table.rows)}
    reasons = protection.row_reasons()
    term = margins.RowRef(coefficients.key, table.name, rows["sector[catholic]"])
    assert reasons[term] == "complementary"
    assert protection.layout.row_cells[term] == catholic
    shown = margins.RowRef(coefficients.key, table.name, rows["ses"])
    assert shown not in reasons  # a term of everyone stays


def test_a_hidden_calibration_bin_cannot_be_had_from_the_models_n_and_prevalence() -> None:
    frame = simulated.students(400, 12, seed=4)
    counts = frame["school_id"].value_counts()
    result = classification.classify(frame, cv.assign_folds(counts, cv.n_folds(len(counts)), 1), seed=1)
    doc = model_results.classification_document(result, _stamp(frame), engine="sklearn", seed=1)
    protection = protect([doc], k=5)
    table = next(t for t in doc.tables if t.name == "calibration")
    reasons = protection.row_reasons()
    hidden = [i for i in range(len(table.rows)) if margins.RowRef(doc.key, "calibration", i) in reasons]
    small = [i for i, row in enumerate(table.rows) if row[table.columns.index("n")] < 5]
    assert small and set(small) <= set(hidden)
    # The bins add up to the model's n: one hidden bin beside n would be a subtraction away.
    shown_n = sum(row[table.columns.index("n")] for i, row in enumerate(table.rows) if i not in hidden)
    nonempty_hidden = [i for i in hidden if table.rows[i][table.columns.index("n")] > 0]
    assert doc.parameters["n"] - shown_n == sum(table.rows[i][table.columns.index("n")] for i in hidden)
    assert len(hidden) >= 2 and (not nonempty_hidden or len(hidden) > 1)
    assert protection.audit.passed, [f.reason for f in protection.audit.failures]
    (margin,) = [m for m in protection.layout.margins if m.total.population == f"model:{doc.key}"]
    assert margin.exhaustive and len(margin.parts) == len(table.rows)
    assert protection.layout.cells[margin.total].fixed and margin.total not in protection.hidden
