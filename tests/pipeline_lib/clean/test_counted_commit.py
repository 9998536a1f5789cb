"""`counted_commit.CleanedTally`: the counts and changes summary of cleaned records, counted part
by part in tasks, sent to the driver as JSON and added up, are those of all the records at once.
(The job that runs `CountedCommit` is tested in `test_clean_job.py`, against the pandas engine.)"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from pipeline_lib.clean import pandas_engine
from pipeline_lib.clean.counted_commit import CleanedTally
from pipeline_lib.clean.summaries import changes_summary
from tests.pipeline_lib.clean.test_cleaning import KNOWN, _raw


def _cleaned() -> pa.Table:
    """Cleaned records with resubmissions collapsed, a student's differing answers flagged and
    changes of several rules in several fields."""
    raw = _raw(
        {
            "student_ref": ["7", "7", "7", "8", "8", None, None, "9"],
            "ses": ["1", "1", "1", "1", "2", " 1,5", "1,5", "-0.5"],
            "sex": ["F", "F", "F", "f ", "F", "female", "F", "M"],
            "math_score": ["50", "50", "50", "50", "50", "50.0", " 50", "50"],
        }
    )
    cleaned = pandas_engine.clean(raw, KNOWN).cleaned
    columns = ["submission_id", "duplicates", "duplicate_conflict", "changes"]
    return pa.Table.from_pandas(cleaned[columns], preserve_index=False)


def test_the_tallies_of_parts_add_up_to_the_tally_of_the_whole() -> None:
    table = _cleaned()
    tallies = []
    for parts in ((table.slice(0, 2), table.slice(2, 1)), (table.slice(3, 0), table.slice(3))):
        tally = CleanedTally()  # a task's, counting its batches in turn
        for part in parts:
            tally.count(part)
        tallies.append(CleanedTally.from_json(tally.to_json()))  # as it reaches the driver
    total = CleanedTally.added(tallies)

    records = table.to_pandas()
    assert total.cleaned == len(records) == 6
    assert total.duplicates_collapsed == sum(len(ids) for ids in records["duplicates"]) == 2
    assert total.conflicts_flagged == int(records["duplicate_conflict"].sum()) == 2
    whole = changes_summary(table, examples=True)
    assert len(whole) > 2 and whole["field"].nunique() > 1
    pd.testing.assert_frame_equal(total.changes_summary(), whole)


def test_no_records_tally_to_zeros_and_an_empty_summary() -> None:
    total = CleanedTally.added([CleanedTally.from_json(CleanedTally().to_json())])
    assert (total.cleaned, total.duplicates_collapsed, total.conflicts_flagged, total.raw_deleted) == (
        0,
        0,
        0,
        0,
    )
    summary = total.changes_summary()
    assert summary.empty and list(summary.columns) == ["field", "rule", "records", "example"]
    assert CleanedTally.added([]).changes_summary().empty
