"""Distributions for the dashboards: histogram counts, the SES-math lines and binned means, the
students per school, checked against independent computations (numpy, scipy), and Spark equal
to the pandas twin."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline_lib.demo.population import generate_population
from pipeline_lib.process.analysis import distributions as d
from pipeline_lib.process.results import SUMMARY_LEFT_OUT, ResultDocument, RunStamp, suppress

STAMP = {"run_id": "process-test", "computed_at": dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)}
RUN = RunStamp(**STAMP)


@pytest.fixture(scope="module")
def population() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(students with sector joined, schools) of a seeded synthetic population."""
    population = generate_population(4_000, 30, seed=3)
    students = population.students.merge(population.schools[["school_id", "sector"]], on="school_id")
    return students, population.schools


def _students(ses: list[float], math: list[float], sector: str | list[str] = "public") -> pd.DataFrame:
    sectors = [sector] * len(ses) if isinstance(sector, str) else sector
    return pd.DataFrame({"school_id": "S1", "sector": sectors, "ses": ses, "math_score": math})


# -- histograms ---------------------------------------------------------------------------------


def test_histogram_counts_match_numpy_with_the_contract_ranges(population: tuple) -> None:
    students, _ = population
    counts = d.histogram_counts_pandas(students)
    for variable, bins in d.HISTOGRAM_BINS.items():
        edges = np.linspace(bins.lower, bins.upper, bins.count + 1)
        expected, _ = np.histogram(students[variable].astype(float), bins=edges)
        mine = counts[counts["variable"] == variable].set_index("bin")["n"]
        assert mine.to_dict() == {i: int(n) for i, n in enumerate(expected) if n > 0}


def test_values_on_a_bin_edge_go_up_and_the_maximum_into_the_last_bin() -> None:
    students = _students([-5.0, -4.5, 0.0, 5.0], [-10.0, 65.0, 100.0, 99.9])
    counts = d.histogram_counts_pandas(students)
    by = {v: dict(zip(g["bin"], g["n"], strict=True)) for v, g in counts.groupby("variable")}
    assert by["ses"] == {0: 1, 1: 1, 10: 1, 19: 1}
    assert by["math_score"] == {0: 1, 15: 1, 21: 2}


def test_missing_and_out_of_range_values_are_not_counted() -> None:
    students = _students([np.nan, 7.0, 1.2], [50.0, 50.0, 150.0])
    counts = d.histogram_counts_pandas(students)
    assert counts.to_dict("records") == [
        {"variable": "math_score", "bin": 12, "n": 2},
        {"variable": "ses", "bin": 12, "n": 1},
    ]


def test_histogram_documents_label_bins_and_suppress_small_ones_but_keep_their_labels() -> None:
    students = _students([0.1] * 6 + [2.2] * 2, [50.0] * 8)
    docs = {doc.key: doc for doc in d.histogram_documents(d.histogram_counts_pandas(students), RUN)}
    ses = docs["distribution:ses"]
    assert ses.n_input == 8
    assert ses.tables[0].rows == [["0 to 0.5", 0.0, 0.5, 6], ["2 to 2.5", 2.0, 2.5, 2]]
    public = suppress(ses, k=5)
    assert public.tables[0].rows == [["0 to 0.5", 0.0, 0.5, 6], ["2 to 2.5", 2.0, 2.5, None]]
    assert public.tables[0].suppressed == [False, True]


# -- the SES-math relation ------------------------------------------------------------------------


def test_lines_equal_least_squares_per_sector_and_for_everyone(population: tuple) -> None:
    students, _ = population
    _, lines = d.relation_tables_pandas(students)
    groups = {**{s: g for s, g in students.groupby("sector")}, d.ALL: students}
    assert lines["sector"].tolist() == ["catholic", "private", "public", d.ALL]
    for row in lines.to_dict("records"):
        group = groups[row["sector"]]
        fit = stats.linregress(group["ses"].astype(float), group["math_score"].astype(float))
        assert row["n"] == len(group)
        assert row["slope"] == pytest.approx(fit.slope, rel=1e-9)
        assert row["intercept"] == pytest.approx(fit.intercept, rel=1e-9)
        assert row["slope_se"] == pytest.approx(fit.stderr, rel=1e-9)
        assert row["r"] == pytest.approx(fit.rvalue, rel=1e-9)


def test_binned_means_equal_a_direct_grouping(population: tuple) -> None:
    students, _ = population
    binned, _ = d.relation_tables_pandas(students)
    edges = np.arange(-5.0, 5.01, 0.5)
    which = pd.cut(students["ses"], edges, right=False, labels=False)
    expected = students.groupby([students["sector"], which])["math_score"].agg(["size", "mean"])
    mine = binned.set_index(["sector", "bin"])
    assert len(mine) == len(expected)
    for (sector, index), row in expected.iterrows():
        assert mine.loc[(sector, index), "n"] == row["size"]
        assert mine.loc[(sector, index), "mean_math"] == pytest.approx(row["mean"])
        assert mine.loc[(sector, index), "ses_lower"] == edges[int(index)]


def test_a_sector_without_ses_spread_has_no_line() -> None:
    students = _students([1.0, 1.0, 1.0, 0.0, 2.0], [40.0, 50.0, 60.0, 40.0, 60.0], ["a", "a", "a", "b", "b"])
    _, lines = d.relation_tables_pandas(students)
    by = lines.set_index("sector")
    assert by.loc["a", ["slope", "intercept", "slope_se"]].isna().all()
    assert by.loc["a", "n"] == 3 and by.loc["a", "mean_math"] == 50.0
    assert by.loc["b", "slope"] == pytest.approx(10.0)


def test_a_sector_under_k_loses_its_line_and_bins_in_the_public_view() -> None:
    big = _students(list(np.linspace(-2, 2, 40)), list(np.linspace(30, 70, 40)), "public")
    small = _students([0.0, 1.0, 2.0], [40.0, 50.0, 70.0], "private")
    both = pd.concat([big, small], ignore_index=True)
    binned, lines = d.relation_tables_pandas(both)
    public = suppress(d.relation_document(binned, lines, RUN), k=5)
    tables = {t.name: t for t in public.tables}
    private_line = next(r for r in tables["lines"].rows if r[0] == "private")
    assert private_line[0] == "private" and all(v is None for v in private_line[1:])
    for row, hidden in zip(tables["binned"].rows, tables["binned"].suppressed, strict=True):
        if row[0] == "private":
            assert hidden and row[4:] == [None, None, None]
    slope = stats.linregress(both["ses"], both["math_score"]).slope
    assert (
        suppress(d.relation_document(binned, lines, RUN), k=5, analyst=True).summary
        == f"Across 43 students, one more SES point goes with {slope:+.1f} math points on average."
    )
    assert public.summary == SUMMARY_LEFT_OUT  # a sector is hidden: the summary could tell of it


# -- schools and the documents together -----------------------------------------------------------


def test_school_sizes_count_students_and_name_their_schools(population: tuple) -> None:
    students, schools = population
    sizes = d.school_sizes_pandas(students, schools)
    expected = students.groupby("school_id").size()
    assert sizes.set_index("school_id")["n"].to_dict() == expected.to_dict()
    named = sizes.merge(schools, on="school_id", suffixes=("", "_ref"))
    assert (named["name"] == named["name_ref"]).all() and (named["sector"] == named["sector_ref"]).all()


def test_school_names_come_from_the_students_frame_when_it_has_them(population: tuple) -> None:
    students, schools = population
    named = students.merge(schools[["school_id", "name"]], on="school_id")
    sizes = d.school_sizes_pandas(named)
    assert sizes.columns.tolist() == ["school_id", "name", "sector", "n"]
    assert sizes.set_index("school_id")["name"].to_dict() == schools.set_index("school_id")["name"].to_dict()


def test_documents_validate_and_survive_a_json_round_trip(population: tuple) -> None:
    students, schools = population
    docs = d.distribution_documents_pandas(students, schools=schools, **STAMP)
    assert [doc.key for doc in docs] == [
        "distribution:math_score", "distribution:ses", "relation:ses_math", "distribution:schools",
    ]  # fmt: skip
    for doc in docs:
        assert ResultDocument.model_validate(doc.model_dump(mode="json")) == doc
        assert doc.n_input == len(students)


# -- Spark gives the same tables ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_spark_tables_equal_the_pandas_twin(spark, population: tuple) -> None:
    students, schools = population
    frame = spark.createDataFrame(students[["school_id", "sector", "ses", "math_score"]]).cache()
    pd.testing.assert_frame_equal(d.histogram_counts(frame), d.histogram_counts_pandas(students))
    binned, lines = d.relation_tables(frame)
    binned_pd, lines_pd = d.relation_tables_pandas(students)
    pd.testing.assert_frame_equal(binned, binned_pd, check_dtype=False)
    pd.testing.assert_frame_equal(lines, lines_pd, check_dtype=False)
    sizes = d.school_sizes(frame, spark.createDataFrame(schools))
    pd.testing.assert_frame_equal(sizes, d.school_sizes_pandas(students, schools), check_dtype=False)
    named = frame.join(spark.createDataFrame(schools[["school_id", "name"]]), "school_id")
    pd.testing.assert_frame_equal(d.school_sizes(named), sizes, check_dtype=False)


@pytest.mark.slow
@pytest.mark.spark
def test_spark_documents_equal_the_pandas_documents(spark, population: tuple) -> None:
    students, _ = population
    frame = spark.createDataFrame(students[["school_id", "sector", "ses", "math_score"]])
    on_spark = d.distribution_documents(frame, **STAMP)
    on_pandas = d.distribution_documents_pandas(students, **STAMP)
    for a, b in zip(on_spark, on_pandas, strict=True):
        assert a.model_dump(exclude={"tables"}) == b.model_dump(exclude={"tables"})
        for ta, tb in zip(a.tables, b.tables, strict=True):
            assert ta.columns == tb.columns and len(ta.rows) == len(tb.rows)
            for ra, rb in zip(ta.rows, tb.rows, strict=True):
                assert [_comparable(v) for v in ra] == [_comparable(v) for v in rb]


def _comparable(value: object) -> object:
    """Floats to 9 significant digits: Spark and pandas sum in different orders."""
    return float(f"{value:.9g}") if isinstance(value, float) else value
