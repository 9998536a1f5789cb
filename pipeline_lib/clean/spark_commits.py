"""CommitClean from Spark's executors: a DataFrame committed by tasks of its own, or (`client`)
a scan worker committing the rejects it finds as it reads."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline_lib.clean.commits import COMMITS_IN_FLIGHT, Part, commit_each
from pipeline_lib.client.core import Endpoint
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.spark.source import default_partitions
from pipeline_lib.wire.requests import Fence

COMMITTED = "raw_deleted long"  # what each committed batch reports to the driver


@dataclass(frozen=True)
class Committer:
    """CommitClean from Spark's executors, at most `batch_size` rows a call. It travels to them
    by value: the driver client's endpoint (address, token, message size, TLS as PEM), fence and
    deadlines, so an executor reads no settings and a run that lost its lease cannot write on."""

    endpoint: Endpoint
    fence: Fence | None
    timeout: float
    stream_timeout: float
    batch_size: int

    @classmethod
    def of(cls, client: DbApiClient, batch_size: int) -> Committer:
        return cls(client.endpoint, client.fence, client.timeout, client.stream_timeout, max(1, batch_size))

    def commit(self, df: DataFrame, part: Part) -> int:
        """Commit `df` as `part` (records of `cleaned` or `quarantine`, or raw ids to delete):
        the raw records deleted.

        In one task per two task slots: each task keeps COMMITS_IN_FLIGHT calls in flight, which
        keeps the db-api as busy as a task per slot did, and the other slots find the resubmissions
        and build the report meanwhile (with every slot committing, they waited for the commits)."""
        tasks = max(1, default_partitions(df.sparkSession) // COMMITS_IN_FLIGHT)
        commit = functools.partial(self.commit_partition, part=part)
        committed = df.coalesce(tasks).mapInArrow(commit, COMMITTED)
        total = committed.agg(F.sum("raw_deleted")).first()
        return int(total[0] or 0) if total is not None else 0

    def client(self) -> DbApiClient:
        """A client of the driver's endpoint, with its fence and deadlines (close it)."""
        return DbApiClient.for_endpoint(
            self.endpoint, fence=self.fence, timeout=self.timeout, stream_timeout=self.stream_timeout
        )

    def commit_partition(self, batches: Iterator[pa.RecordBatch], part: Part) -> Iterator[pa.RecordBatch]:
        """On an executor: one Spark partition, one client, one CommitClean per chunk, pipelined."""
        chunks = chunked(batches, self.batch_size)
        first = next(chunks, None)
        if first is None:
            return  # an empty partition calls nothing
        client = self.client()
        try:
            for deleted in commit_each(client, ((chunk, part) for chunk in itertools.chain([first], chunks))):
                yield pa.record_batch({"raw_deleted": [deleted]})
        finally:
            client.close()


def chunked(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """`batches` regrouped into tables of `size` rows (the last may be shorter): at most one
    chunk and one incoming batch are held at a time."""
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        held.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(held)
            yield table.slice(0, size)
            rest = table.slice(size)
            held, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(held)
