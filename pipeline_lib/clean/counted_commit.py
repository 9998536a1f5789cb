"""What the Spark clean's last job runs on the cleaned records as its windows mark the
resubmissions (`spark_engine.mark_duplicates`): commit them (a record with the resubmissions it
absorbed in one call), quarantine the resubmissions past `rules.MAX_DUPLICATES` it flags, and
count what the report says of them, each task ending with one tally row, which the driver adds up.

One job, and nothing materialised: the windows, the commits and the counting run together in
each task, where the clean once materialised the marked records, then committed them in one job
while two more counted them and summed up their changes.

A flagged record carries no raw values (the kept records hold only typed ones), so the task reads
its raw record back by id, only when there is one, and commits it as `checked_read` commits a
reject: receipt fields, each raw value as text, the reason. Its raw id is deleted in that commit.

A task Spark runs again commits its records again (an atomic upsert each time, so the data is
right), but its resubmissions' raw ids were deleted by the first attempt: `raw_deleted` then
falls short, as in `checked_read`. A flagged record whose raw record the first attempt already
quarantined is not found again, and skipped: it is placed, and counted by that attempt only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib.clean import by_value, rules
from pipeline_lib.clean.commits import CommitPipeline
from pipeline_lib.clean.pandas_job import RAW_TEXT
from pipeline_lib.clean.spark_commits import Committer, chunked
from pipeline_lib.clean.summaries import changes_summary, merge_counts, reasons_summary
from pipeline_lib.contract.collections import RAW

TALLY_SCHEMA = "tally string"  # what each task yields: one row, its tally as JSON
_COUNTS = ("cleaned", "duplicates_collapsed", "conflicts_flagged", "quarantined", "raw_deleted")
# Raw ids one scan reads back, at most: the db-api takes at most 10,000 values in an `in` filter.
RAW_IDS_PER_SCAN = 10_000


@dataclass
class CleanedTally:
    """One task's cleaned records: how many, the resubmissions they absorbed, those flagged as a
    student's differing answers, the resubmissions past the bound it quarantined, the raw records
    its commits deleted, and the summaries of the changes and of the quarantined records' reasons."""

    cleaned: int = 0
    duplicates_collapsed: int = 0
    conflicts_flagged: int = 0
    quarantined: int = 0
    raw_deleted: int = 0
    changes: pd.DataFrame | None = None  # the summary so far (`changes_summary`, with examples)
    reasons: pd.DataFrame | None = None  # of the quarantined (`reasons_summary`, with examples)

    def count(self, records: pa.Table) -> None:
        """Add `records` (marked cleaned records) to the counts and the changes summary."""
        self.cleaned += records.num_rows
        self.duplicates_collapsed += _total(pc.list_value_length(records.column("duplicates")))
        self.conflicts_flagged += _total(records.column("duplicate_conflict").cast(pa.int64()))
        part = changes_summary(records.select(["changes"]), examples=True)
        self.changes = part if self.changes is None else merge_counts([self.changes, part])

    def count_quarantined(self, quarantine: pa.Table) -> None:
        """Add `quarantine` (records with their `reasons`) to the count and the reasons summary."""
        self.quarantined += quarantine.num_rows
        part = reasons_summary(quarantine.select(["reasons"]), examples=True)
        self.reasons = part if self.reasons is None else merge_counts([self.reasons, part])

    def changes_summary(self) -> pd.DataFrame:
        return self.changes if self.changes is not None else _no_changes()

    def reasons_summary(self) -> pd.DataFrame:
        return self.reasons if self.reasons is not None else _no_reasons()

    def to_json(self) -> str:
        counts = {name: getattr(self, name) for name in _COUNTS}
        summaries = {
            "changes": self.changes_summary().to_dict("records"),
            "reasons": self.reasons_summary().to_dict("records"),
        }
        return json.dumps({**counts, **summaries})

    @classmethod
    def from_json(cls, text: str) -> CleanedTally:
        data = json.loads(text)
        changes = pd.DataFrame(data.pop("changes"), columns=_change_columns())
        reasons = pd.DataFrame(data.pop("reasons"), columns=_reason_columns())
        return cls(
            **data,
            changes=changes.astype({"records": "int64"}),
            reasons=reasons.astype({"records": "int64"}) if len(reasons) else None,
        )

    @classmethod
    def added(cls, tallies: list[CleanedTally]) -> CleanedTally:
        total = cls()
        for tally in tallies:
            for name in _COUNTS:
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        parts = [t.changes_summary() for t in tallies]
        total.changes = merge_counts(parts) if parts else None
        reasons = [t.reasons for t in tallies if t.reasons is not None and len(t.reasons)]
        total.reasons = merge_counts(reasons) if reasons else None
        return total


def _total(values: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(values).as_py() or 0)


def _no_changes() -> pd.DataFrame:
    return changes_summary(pa.table({"changes": pa.array([], pa.list_(by_value.CHANGE))}), examples=True)


@functools.cache
def _change_columns() -> list[str]:
    return list(_no_changes().columns)


def _no_reasons() -> pd.DataFrame:
    return reasons_summary(pa.table({"reasons": pa.array([], pa.list_(by_value.REASON))}), examples=True)


@functools.cache
def _reason_columns() -> list[str]:
    return list(_no_reasons().columns)


@dataclass(frozen=True)
class CountedCommit:
    """Run on each task's marked cleaned records (`mapInArrow`, `TALLY_SCHEMA`); travels pickled.
    Commits `committer.batch_size` records a call, COMMITS_IN_FLIGHT calls at once, unless
    `commit` is False (a dry run, which only counts). Records flagged in `rules.SURPLUS` are
    quarantined from their raw records, read back `RAW_IDS_PER_SCAN` at a time."""

    committer: Committer
    commit: bool = True

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tally = CleanedTally()
        surplus: list[str] = []  # flagged ids not yet read back: at most RAW_IDS_PER_SCAN
        with self.committer.pipeline(self.commit) as pipeline:
            for records in chunked(batches, self.committer.batch_size):
                kept, flagged = _parted(records)
                tally.count(kept)
                if kept.num_rows:
                    tally.raw_deleted += sum(pipeline.add(kept, "cleaned"))
                surplus += flagged
                if len(surplus) >= RAW_IDS_PER_SCAN:
                    tally.raw_deleted += self._quarantine(pipeline, surplus, tally)
                    surplus = []
            if surplus:
                tally.raw_deleted += self._quarantine(pipeline, surplus, tally)
            tally.raw_deleted += sum(pipeline.drain())
        yield pa.record_batch({"tally": [tally.to_json()]})

    def _quarantine(self, pipeline: CommitPipeline, ids: list[str], tally: CleanedTally) -> int:
        """Commit the raw records of `ids` still in raw as quarantine, resubmitted too often, and
        count them: the raw records deleted by the calls that ended meanwhile. A dry run reads
        nothing: it deleted nothing, so every one is still in raw."""
        if pipeline.client is None:
            tally.count_quarantined(pa.table({"reasons": _too_often(len(ids))}))
            return 0
        deleted = 0
        size = self.committer.batch_size
        for start in range(0, len(ids), RAW_IDS_PER_SCAN):
            wanted = ids[start : start + RAW_IDS_PER_SCAN]
            found = pipeline.client.scan(
                RAW, columns=RAW_TEXT.names, schema=RAW_TEXT, filter=[("_id", "in", wanted)]
            )
            quarantine = found.select(RAW_TEXT.names).append_column("reasons", _too_often(found.num_rows))
            tally.count_quarantined(quarantine)
            for offset in range(0, quarantine.num_rows, size):
                deleted += sum(pipeline.add(quarantine.slice(offset, size), "quarantine"))
        return deleted


def _parted(records: pa.Table) -> tuple[pa.Table, list[str]]:
    """`records` without those flagged in `rules.SURPLUS` (and without the flag), and the flagged
    ones' ids. A table without the flag holds no flagged record."""
    if rules.SURPLUS not in records.column_names:
        return records, []
    flags = records.column(rules.SURPLUS)
    kept = records.drop_columns([rules.SURPLUS])
    if not pc.any(flags).as_py():
        return kept, []
    flagged = pc.fill_null(flags, False)
    ids = records.filter(flagged).column("submission_id").to_pylist()
    return kept.filter(pc.invert(flagged)), ids


def _too_often(n: int) -> pa.Array:
    """`n` lists of one reason, `rules.resubmitted_too_often`."""
    return pa.array([[rules.resubmitted_too_often()] for _ in range(n)], pa.list_(by_value.REASON))
