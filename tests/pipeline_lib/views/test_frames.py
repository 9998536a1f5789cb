"""Frame building for the dashboards: the per-school table with its k rule, the school filter and
ranking, and the run history."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.runs.records import RunError, RunRecord
from pipeline_lib.views import frames
from tests.pipeline_lib.views.sample_results import WHEN, public, result_table

SIZES = pd.DataFrame(
    {
        "school_id": ["A1", "B2", "C3"],
        "name": ["Alder High", "Birch Academy", "Cedar College"],
        "sector": ["public", "private", "catholic"],
        "n": [40, 3, 25],
    }
)
BY_SCHOOL = pd.DataFrame(
    {
        "school_id": ["A1", "A1", "B2", "B2", "C3", "C3"],
        "variable": ["math_score", "ses"] * 3,
        "n": [40, 40, 3, 3, 25, 25],
        "mean": [55.0, 0.2, 70.0, 1.5, 48.0, -0.4],
    }
)
EFFECTS = pd.DataFrame(
    {
        "school_id": ["A1", "B2", "C3"],
        "n": [40, 3, 25],
        "intercept": [2.0, 9.0, -1.5],
        "intercept_se": [1.0, 3.0, 0.5],
        "slope": [0.3, 1.0, -0.2],
        "slope_se": [0.2, 0.9, 0.1],
    }
)


def _schools() -> pd.DataFrame:
    table = frames.school_table(
        public("distribution:schools", result_table("schools", SIZES, ["school_id", "name", "sector"])),
        public("descriptives:by_school", result_table("statistics", BY_SCHOOL, ["school_id", "variable"])),
        public("mixedlm:school_effects", result_table("random_effects", EFFECTS, ["school_id"])),
    )
    assert table is not None
    return table


def test_the_school_table_joins_sizes_means_and_effects() -> None:
    table = _schools().set_index("school_id")
    assert table.loc[
        "A1", ["name", "sector", "n", "mean_math", "mean_ses", "intercept", "slope_se"]
    ].tolist() == [
        "Alder High",
        "public",
        40,
        55.0,
        0.2,
        2.0,
        0.2,
    ]


def test_a_school_under_k_keeps_its_name_but_shows_no_number() -> None:
    row = _schools().set_index("school_id").loc["B2"]
    assert row["name"] == "Birch Academy" and row["sector"] == "private" and bool(row["suppressed"])
    assert row[["n", "mean_math", "mean_ses", "intercept", "intercept_se", "slope", "slope_se"]].isna().all()


def test_without_the_sizes_document_the_school_labels_come_from_the_descriptives() -> None:
    named = BY_SCHOOL.merge(SIZES[["school_id", "name", "sector"]], on="school_id")
    table = frames.school_table(
        None,
        public(
            "descriptives:by_school", result_table("statistics", named, ["school_id", "variable", "name"])
        ),
        None,
    )
    assert table is not None
    assert table.set_index("school_id").loc["C3", ["name", "sector", "n", "mean_math"]].tolist() == [
        "Cedar College",
        "catholic",
        25,
        48.0,
    ]


def test_filtering_by_sector_and_searching_code_or_name_case_insensitively() -> None:
    schools = _schools()
    chosen, matches = frames.filter_schools(schools, None, "  birch ")
    assert len(chosen) == 3 and chosen.loc[matches, "school_id"].tolist() == ["B2"]
    chosen, matches = frames.filter_schools(schools, "public", "a1")
    assert chosen["school_id"].tolist() == ["A1"] and matches.tolist() == [True]
    _, matches = frames.filter_schools(schools, None, "")
    assert not matches.any()


def test_effects_are_ranked_with_95_percent_limits_and_hidden_schools_left_out() -> None:
    ranked = frames.effects_ranked(_schools(), "intercept")
    assert ranked["school_id"].tolist() == ["C3", "A1"]
    assert ranked.loc[1, "low"] == pytest.approx(2.0 - 1.96 * 1.0, abs=1e-3)
    assert ranked.loc[1, "high"] == pytest.approx(2.0 + 1.96 * 1.0, abs=1e-3)


def _run(notebook: str, hour: int, status: str = "succeeded", **counts: int) -> RunRecord:
    record = RunRecord(
        run_id=f"{notebook}-{hour}",
        notebook=notebook,
        started_at=WHEN.replace(hour=hour),
        code_version="t",
        host="h",
        counts=counts,
    )
    record.status = status  # type: ignore[assignment]
    return record


def test_the_clean_history_lists_finished_clean_runs_that_read_records_oldest_first() -> None:
    runs = [
        _run("clean", 9, records_in=10, cleaned=8, quarantined=2),
        _run("clean", 7, records_in=5, cleaned=5),
        _run("clean", 8, records_in=0),
        _run("clean", 10, "running", records_in=3),
        _run("process", 6),
    ]
    history = frames.clean_history(runs)
    assert history["run_id"].tolist() == ["clean-7", "clean-9"]
    assert history.loc[1, ["cleaned", "quarantined"]].tolist() == [8, 2]


def test_the_latest_run_of_each_job_says_what_failed_without_its_message() -> None:
    failed = _run("process", 9, "failed")
    failed.error = RunError(cell_index=3, exception="AnalysisError", message="school 1234 has one student")
    latest = frames.latest_runs([_run("process", 8), failed, _run("clean", 7)]).set_index("notebook")
    assert latest.loc["process", "status"] == "failed"
    assert latest.loc["process", "problem"] == "AnalysisError in cell 3"
    assert latest.loc["clean", "problem"] == ""
