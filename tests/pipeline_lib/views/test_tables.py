"""Result tables as frames: one helper for stored documents and public views, tables found by name
or by their columns, and the process report's captions and cut."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.views import report, tables
from tests.pipeline_lib.views.sample_results import public, result_table, stored

GROUPS = pd.DataFrame({"school_id": ["A1", "B2", "C3"], "n": [40, 3, 25], "mean": [55.0, 70.0, 48.0]})
PAIRS = pd.DataFrame({"a": ["ses"], "b": ["math_score"], "r": [0.4]})


def test_a_public_table_frame_marks_groups_under_k_and_blanks_their_numbers() -> None:
    frame = tables.table_frame(public("x:y", result_table("groups", GROUPS, ["school_id"])), "groups")
    assert frame["suppressed"].tolist() == [False, True, False]
    assert frame["school_id"].tolist() == ["A1", "B2", "C3"]  # labels stay
    assert frame["mean"].fillna(0).tolist() == [55.0, 0, 48.0]


def test_a_stored_table_frame_holds_its_columns_only() -> None:
    frame = tables.table_frame(stored("x:y", result_table("groups", GROUPS, ["school_id"])), "groups")
    assert list(frame.columns) == ["school_id", "n", "mean"]
    assert frame["mean"].tolist() == [55.0, 70.0, 48.0]


def test_a_table_is_found_by_name_else_by_the_columns_it_must_have() -> None:
    result = public(
        "x:y", result_table("groups", GROUPS, ["school_id"]), result_table("pairs", PAIRS, [], None)
    )
    assert tables.find_table(result, "pairs").name == "pairs"
    assert tables.find_table(result, needs=("r",)).name == "pairs"
    assert tables.find_table(result, "groups", needs=("r",)) is None
    assert tables.table_frame(result, "missing") is None and tables.table_frame(None) is None


def test_a_required_table_that_is_missing_names_the_tables_there_are() -> None:
    doc = stored("x:y", result_table("groups", GROUPS, ["school_id"]))
    with pytest.raises(KeyError, match=r"x:y has no table 'pairs'; it has \['groups'\]"):
        tables.required_frame(doc, "pairs")


def test_the_report_cuts_long_tables_and_marks_analyst_tables_in_the_caption() -> None:
    doc = stored(
        "x:y",
        result_table("groups", GROUPS, ["school_id"]),
        result_table("pairs", PAIRS, [], None, audience="analyst"),
    )
    shown = report.table_frames(doc, max_rows=2)
    assert [caption for caption, _ in shown] == ["groups: first 2 of 3 rows", "pairs (analysts only)"]
    assert len(shown[0][1]) == 2 and "suppressed" not in shown[0][1]
