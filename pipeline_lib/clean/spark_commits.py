"""CommitClean from Spark's executors: what a task needs to commit (`Committer.pipeline`), as the
scan workers commit the rejects they find (`checked_read`) and the last job's tasks the cleaned
records (`counted_commit`), and the chunks they commit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from pipeline_lib.clean.commits import CommitPipeline
from pipeline_lib.client.core import Endpoint
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.wire.requests import Fence


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

    def client(self) -> DbApiClient:
        """A client of the driver's endpoint, with its fence and deadlines (close it)."""
        return DbApiClient.for_endpoint(
            self.endpoint, fence=self.fence, timeout=self.timeout, stream_timeout=self.stream_timeout
        )

    @contextlib.contextmanager
    def pipeline(self, commit: bool = True) -> Iterator[CommitPipeline]:
        """A task's commits: a `CommitPipeline` on its own `client()`, both closed when it ends;
        with `commit` False (a dry run), one that sends nothing."""
        if not commit:
            with CommitPipeline(None) as dry:
                yield dry
            return
        with self.client() as client, CommitPipeline(client) as pipeline:
            yield pipeline


def chunked(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
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
