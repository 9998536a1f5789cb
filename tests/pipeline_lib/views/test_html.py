"""The dashboards' HTML pieces say why a figure is missing: a withheld result in the results page's
words, a Why column for noted rows, and a caption line per reason rows are hidden or held."""

from __future__ import annotations

import pandas as pd

from pipeline_lib.process.results import COMPLEMENTARY_NOTE, WITHHELD_NOTE
from pipeline_lib.views import html

HELD = "not updated: fewer than 5 students changed since 2026-11-29 06:00 UTC"
ROWS = pd.DataFrame(
    {
        "group": ["a", "b", "c", "d", "e"],
        "n": [None, None, None, 40, 50],
        "suppressed": [True, True, True, False, False],
        "note": ["fewer than 5 students", COMPLEMENTARY_NOTE, None, HELD, None],
    }
)


def test_a_withheld_result_reads_as_on_the_results_page() -> None:
    shown = html.withheld(WITHHELD_NOTE, "Overall:")
    assert "<strong>Overall:</strong> Withheld: a hidden figure could be worked out" in shown


def test_a_table_with_noted_rows_has_a_why_column_and_one_without_has_none() -> None:
    table = html.table(ROWS, columns={"group": "Group", "n": "Students"}, formats={"n": html.count}, k=5)
    assert table.count('<td class="wb-note">') == len(ROWS) and '<th class="wb-text">Why</th>' in table
    assert f'<td class="wb-note">{HELD}</td>' in table and "hidden (hidden so others" in table
    plain = html.table(ROWS.drop(columns="note"), columns={"group": "Group", "n": "Students"}, k=5)
    assert "Why" not in plain and "hidden (fewer than 5)" in plain


def test_row_notes_count_each_reason_and_take_a_hidden_row_without_a_note_as_small() -> None:
    assert html.row_notes(ROWS, "bin", 5) == (
        f"2 bins hidden, fewer than 5 students. 1 bin hidden so others cannot be derived. 1 bin {HELD}."
    )
    assert html.row_notes(ROWS.iloc[[4]], "bin", 5) == "" and html.row_notes(None, "bin", 5) == ""
