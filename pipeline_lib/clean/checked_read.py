"""What the Spark clean's scan workers run on the raw batches they read: clean and check each
record (`by_value`), commit the rejects at once (quarantine, and the ids of records without
consent: neither depends on other records) and hand Spark only the kept records, which still need
every other record to find the resubmissions among them. Each task ends with one tally row: its
counts and its summary of the reasons, which the driver adds up.

The rejects' commits overlap the read (the db-api writes while the workers read and clean), and
Spark never carries them: 1,000,000 dirty records, 62% rejected, moved 4.5 s of conversion to and
from the JVM for a commit that only started once the read had ended.

A task Spark runs again (its worker or a db-api replica died) commits again what it finds, which
is safe (each commit is an atomic upsert and delete), but it finds only what the first attempt
left in `raw`: the run's counts then fall short of what it placed. The data never does.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from pipeline_lib.clean import by_value
from pipeline_lib.clean.spark_commits import Committer, chunked
from pipeline_lib.clean.summaries import merge_counts, reasons_summary

TALLY = "__tally"  # a task's tally (JSON) in its last row; null in the rows of kept records


def read_schema() -> pa.Schema:
    """What `CheckedRead` yields: the kept records, and the tally column."""
    return by_value.kept_schema().append(pa.field(TALLY, pa.string()))


@dataclass
class Tally:
    """One task's records: read, quarantined, without consent, raw deleted, reasons."""

    records: int = 0
    quarantined: int = 0
    without_consent: int = 0
    raw_deleted: int = 0
    reasons: list[pd.DataFrame] = field(default_factory=list)

    def reasons_summary(self) -> pd.DataFrame:
        return merge_counts(self.reasons) if self.reasons else _no_reasons()

    def to_json(self) -> str:
        reasons = self.reasons_summary().to_dict("records")
        counts = {k: getattr(self, k) for k in ("records", "quarantined", "without_consent", "raw_deleted")}
        return json.dumps({**counts, "reasons": reasons})

    @classmethod
    def from_json(cls, text: str) -> Tally:
        data = json.loads(text)
        reasons = pd.DataFrame(data.pop("reasons"), columns=_reason_columns())
        return cls(**data, reasons=[reasons.astype({"records": "int64"})])

    @classmethod
    def added(cls, tallies: list[Tally]) -> Tally:
        total = cls()
        for t in tallies:
            total.records += t.records
            total.quarantined += t.quarantined
            total.without_consent += t.without_consent
            total.raw_deleted += t.raw_deleted
            total.reasons += t.reasons
        return total


def _no_reasons() -> pd.DataFrame:
    return reasons_summary(pa.table({"reasons": pa.array([], pa.list_(by_value.REASON))}), examples=True)


@functools.cache
def _reason_columns() -> list[str]:
    return list(_no_reasons().columns)


@dataclass(frozen=True)
class CheckedRead:
    """Run on each task's raw batches (`spark.source.read_through`); travels pickled. With
    `commit` False (a dry run), nothing is committed; with `limit`, the task stops after that
    many records (the job reads one partition then, so the limit is the run's)."""

    schools: tuple[str, ...]
    committer: Committer
    limit: int = 0
    commit: bool = True

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        cleaner, known, tally = by_value.ValueCleaner(), frozenset(self.schools), Tally()
        size = self.committer.batch_size
        with self.committer.pipeline(self.commit) as rejects:
            for batch in self._limited(batches):
                kept, quarantine, without_consent = by_value.split(cleaner.check(batch, known))
                tally.records += batch.num_rows
                tally.quarantined += quarantine.num_rows
                tally.without_consent += without_consent.num_rows
                if quarantine.num_rows:
                    tally.reasons.append(reasons_summary(quarantine, examples=True))
                tally.raw_deleted += rejects.add_all(chunked(quarantine.to_batches(), size), "quarantine")
                tally.raw_deleted += rejects.add_all(chunked(without_consent.to_batches(), size), "raw_ids")
                if kept.num_rows:
                    yield kept.append_column(TALLY, pa.nulls(kept.num_rows, pa.string()))
            tally.raw_deleted += sum(rejects.drain())
        yield _tally_row(tally)

    def _limited(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        left = self.limit
        for batch in batches:
            if self.limit and batch.num_rows >= left:
                if left:
                    yield batch.slice(0, left)
                return
            left -= batch.num_rows
            yield batch


def _tally_row(tally: Tally) -> pa.RecordBatch:
    schema = read_schema()
    columns = [pa.nulls(1, f.type) for f in schema][:-1]
    return pa.RecordBatch.from_arrays([*columns, pa.array([tally.to_json()], pa.string())], schema=schema)
