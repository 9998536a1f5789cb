"""What the Spark clean's last job runs on the cleaned records as its windows mark the
resubmissions (`spark_engine.mark_duplicates`): commit them (a record with the resubmissions it
absorbed in one call) and count what the report says of them, each task ending with one tally
row, which the driver adds up.

One job, and nothing materialised: the windows, the commits and the counting run together in
each task, where the clean once materialised the marked records, then committed them in one job
while two more counted them and summed up their changes.

A task Spark runs again commits its records again (an atomic upsert each time, so the data is
right), but its resubmissions' raw ids were deleted by the first attempt: `raw_deleted` then
falls short, as in `checked_read`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib.clean import by_value
from pipeline_lib.clean.spark_commits import Committer, chunked
from pipeline_lib.clean.summaries import changes_summary, merge_counts

TALLY_SCHEMA = "tally string"  # what each task yields: one row, its tally as JSON
_COUNTS = ("cleaned", "duplicates_collapsed", "conflicts_flagged", "raw_deleted")


@dataclass
class CleanedTally:
    """One task's cleaned records: how many, the resubmissions they absorbed, those flagged as a
    student's differing answers, the raw records their commits deleted, and their changes."""

    cleaned: int = 0
    duplicates_collapsed: int = 0
    conflicts_flagged: int = 0
    raw_deleted: int = 0
    changes: pd.DataFrame | None = None  # the summary so far (`changes_summary`, with examples)

    def count(self, records: pa.Table) -> None:
        """Add `records` (marked cleaned records) to the counts and the changes summary."""
        self.cleaned += records.num_rows
        self.duplicates_collapsed += _total(pc.list_value_length(records.column("duplicates")))
        self.conflicts_flagged += _total(records.column("duplicate_conflict").cast(pa.int64()))
        part = changes_summary(records.select(["changes"]), examples=True)
        self.changes = part if self.changes is None else merge_counts([self.changes, part])

    def changes_summary(self) -> pd.DataFrame:
        return self.changes if self.changes is not None else _no_changes()

    def to_json(self) -> str:
        counts = {name: getattr(self, name) for name in _COUNTS}
        return json.dumps({**counts, "changes": self.changes_summary().to_dict("records")})

    @classmethod
    def from_json(cls, text: str) -> CleanedTally:
        data = json.loads(text)
        changes = pd.DataFrame(data.pop("changes"), columns=_change_columns())
        return cls(**data, changes=changes.astype({"records": "int64"}))

    @classmethod
    def added(cls, tallies: list[CleanedTally]) -> CleanedTally:
        total = cls()
        for tally in tallies:
            for name in _COUNTS:
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        parts = [t.changes_summary() for t in tallies]
        total.changes = merge_counts(parts) if parts else None
        return total


def _total(values: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(values).as_py() or 0)


def _no_changes() -> pd.DataFrame:
    return changes_summary(pa.table({"changes": pa.array([], pa.list_(by_value.CHANGE))}), examples=True)


@functools.cache
def _change_columns() -> list[str]:
    return list(_no_changes().columns)


@dataclass(frozen=True)
class CountedCommit:
    """Run on each task's marked cleaned records (`mapInArrow`, `TALLY_SCHEMA`); travels pickled.
    Commits `committer.batch_size` records a call, COMMITS_IN_FLIGHT calls at once, unless
    `commit` is False (a dry run, which only counts)."""

    committer: Committer
    commit: bool = True

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tally = CleanedTally()
        with self.committer.pipeline(self.commit) as pipeline:
            for records in chunked(batches, self.committer.batch_size):
                tally.count(records)
                tally.raw_deleted += sum(pipeline.add(records, "cleaned"))
            tally.raw_deleted += sum(pipeline.drain())
        yield pa.record_batch({"tally": [tally.to_json()]})
