"""Results become valid, suppressible, reproducible documents; failures become documents that
say why and hold no estimates."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.contract import result_keys
from pipeline_lib.process.analysis import descriptive_results, model_results, multilevel
from pipeline_lib.process.analysis.base import Attempt, Failure
from pipeline_lib.process.results import ResultDocument, suppress
from tests.pipeline_lib.process.analysis import simulated

STAMP = descriptive_results.Stamp(
    run_id="run-1",
    computed_at=dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC),
    n_input=3_000,
    input_high_water_mark=3_100,
    k_min_group=5,
    seed=1,
)


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    frame = simulated.students(3_000, 30, seed=2)
    frame.loc[frame.index[:3], "sex"] = "other"
    frame.loc[frame.index[3:], "sex"] = frame.loc[frame.index[3:], "sex"].replace("other", "male")
    return frame


@pytest.fixture(scope="module")
def fitted_documents(students: pd.DataFrame) -> list[ResultDocument]:
    return simulated.model_documents(students, STAMP, folds=5, seed=1, sampled=True)


def test_documents_round_trip_through_json_and_validate(fitted_documents: list[ResultDocument]) -> None:
    for doc in fitted_documents:
        stored = json.loads(json.dumps(doc.model_dump(mode="json"), allow_nan=False))
        assert ResultDocument.model_validate(stored) == doc
        assert doc.key == f"{doc.analysis}:{doc.scope}" and doc.key in result_keys.ANALYSIS_KEYS
        assert (doc.run_id, doc.n_input, doc.input_high_water_mark) == ("run-1", 3_000, 3_100)
        assert doc.status == "ok" and doc.summary


def test_every_table_names_columns_it_has_and_suppress_accepts_it(
    fitted_documents: list[ResultDocument],
) -> None:
    for doc in fitted_documents:
        for t in doc.tables:
            assert t.group_size_column is None or t.group_size_column in t.columns, (doc.key, t.name)
            assert set(t.label_columns) <= set(t.columns)
            assert all(len(row) == len(t.columns) for row in t.rows)
        suppress(doc, k=5, analyst=True)
        if doc.chart:
            chart_table = next(t for t in doc.tables if t.name == doc.chart.table)
            assert {doc.chart.x, doc.chart.y} <= set(chart_table.columns)


def test_a_term_resting_on_fewer_than_k_students_is_suppressed(
    fitted_documents: list[ResultDocument],
) -> None:
    public = suppress(fitted_documents[0], k=5)
    coefficients = public.tables[0]
    rows = dict(zip([r[0] for r in coefficients.rows], coefficients.suppressed, strict=True))
    assert rows["sex[other]"] and not rows["ses"] and not rows["sex[male]"]


def test_the_sample_size_is_stated_only_where_a_sample_was_used(
    fitted_documents: list[ResultDocument],
) -> None:
    stamp = descriptive_results.Stamp(**{**STAMP.__dict__, "sample_size": 2_000})
    sampled = model_results.null_model_document(
        multilevel.fit_null(simulated.students(2_000, 20, seed=3)), stamp, sampled=True
    )
    assert sampled.sample_size == 2_000
    assert fitted_documents[1].sample_size is None


def test_a_failed_fit_is_stored_as_a_failure_without_estimates() -> None:
    failed = Failure(
        "mixedlm:school_effects",
        "no optimizer gave a usable REML fit (tried lbfgs, nm; last: x)",
        attempts=(
            Attempt("lbfgs", False, 1.5, "the optimizer stopped before converging"),
            Attempt("nm", False, 2.0, "the optimizer stopped before converging"),
        ),
    )
    doc = model_results.school_effects_document(failed, STAMP, {}, sampled=False)
    assert doc.status == "failed" and doc.error == failed.reason
    assert "not computed" in doc.summary and failed.reason in doc.summary
    assert [t.name for t in doc.tables] == ["attempts"] and doc.tables[0].audience == "analyst"
    assert "seconds" not in doc.tables[0].columns  # timings would make reruns differ
    assert doc.chart is None


def test_cells_are_json_safe_and_rounded_to_twelve_significant_digits() -> None:
    cell = descriptive_results.cell
    assert cell(np.float64(np.nan)) is None and cell(float("inf")) is None
    assert descriptive_results.cell(np.int64(7)) == 7 and descriptive_results.cell(np.bool_(True)) is True
    assert descriptive_results.cell(0.1 + 0.2) == 0.3 and descriptive_results.cell(1 / 3) == 0.333333333333
    assert descriptive_results.cell(pd.NA) is None
    assert descriptive_results.plain({"a": (np.float64(1.5), None), "b": {"c": np.int32(2)}}) == {
        "a": [1.5, None],
        "b": {"c": 2},
    }


def test_descriptive_documents_have_a_long_table_and_name_schools() -> None:
    stats = {
        "n": [10, 3],
        "mean": [1.0, 2.0],
        "sd": [0.1, 0.2],
        "min": [0.0, 1.0],
        "q1": [0.5, 1.5],
        "median": [1.0, 2.0],
        "q3": [1.5, 2.5],
        "max": [2.0, 3.0],
        "below_k": [False, True],
    }
    tables = {
        "by_school": pd.DataFrame({"school_id": ["A", "B"], "variable": "math_score", **stats}),
        "by_sector": pd.DataFrame({"sector": ["public", "private"], "variable": "math_score", **stats}),
    }
    schools = pd.DataFrame(
        {"school_id": ["A", "B"], "name": ["North", "South"], "sector": ["public", "private"]}
    )
    by_school, by_sector = descriptive_results.descriptives_documents(tables, STAMP, schools)
    statistics = by_school.tables[0]
    assert statistics.columns[:4] == ["school_id", "name", "sector", "variable"]
    assert statistics.group_size_column == "n" and statistics.rows[0][1] == "North"
    public = suppress(by_sector, k=5)
    assert public.tables[0].suppressed == [False, True] and public.tables[0].rows[1][0] == "private"
    assert by_sector.chart is not None and by_sector.chart.table == "math_score_means"


def test_a_fit_found_by_a_later_optimizer_says_which_ones_failed_and_keeps_counts_whole() -> None:
    students = simulated.students(2_000, 20, seed=3)
    model = multilevel.fit_null(students, optimizers=("lbfgs", "bfgs"), maxiter={"lbfgs": 1})
    doc = model_results.null_model_document(model, STAMP, sampled=False)
    assert doc.parameters["optimizer"] == "bfgs"
    assert doc.warnings[0].startswith("lbfgs gave no usable fit: the optimizer stopped before converging")
    estimates = dict((row[0], row[1]) for row in doc.tables[0].rows)
    assert estimates["n_students"] == 2_000 and isinstance(estimates["n_students"], int)
