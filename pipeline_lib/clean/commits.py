"""One atomic CommitClean of a chunk of a clean's output, as both engines commit it, a sequence
of them pipelined, and the wait for a commit running beside the clean."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Literal

import pyarrow as pa

from pipeline_lib.client.sync import DbApiClient

# What a chunk holds: records of `cleaned` or `quarantine`, or raw ids to delete only.
Part = Literal["cleaned", "quarantine", "raw_ids"]


def commit_chunk(client: DbApiClient, chunk: pa.Table, part: Part) -> int:
    """Commit `chunk` as `part` and delete its raw ids, in one atomic unit: the raw records
    deleted. A kept record and the resubmissions it absorbed are one row, so they always go in
    the same call."""
    ids = chunk.column("submission_id").to_pylist()
    if part == "cleaned":
        ids += [i for others in chunk.column("duplicates").to_pylist() for i in others or []]
        return client.commit_clean(chunk, None, ids).raw_deleted
    if part == "quarantine":
        return client.commit_clean(None, chunk, ids).raw_deleted
    return client.commit_clean(None, None, ids).raw_deleted


# CommitClean calls in flight at once: while the db-api writes one chunk to the store, it reads
# and encodes the next (the store's write runs without the GIL), and the caller prepares the one
# after. 1,000,000 dirty records with pandas, one run each: write 15.9 s one call at a time,
# 14.7 s with the next chunk converted meanwhile, 12.8 s with two in flight.
COMMITS_IN_FLIGHT = 2


def commit_each(client: DbApiClient, chunks: Iterable[tuple[pa.Table, Part]]) -> Iterator[int]:
    """Commit each chunk as its part, up to COMMITS_IN_FLIGHT calls at once, yielding the raw
    records each call deleted, in the chunks' order. Each call is atomic and the chunks share no
    record, so their order does not matter. The first failed call (in the chunks' order) is raised
    at once, an interrupt too; a call started beside it may still commit. What was committed stays
    committed, and a rerun cleans the rest."""
    sender = ThreadPoolExecutor(COMMITS_IN_FLIGHT, thread_name_prefix="commit")
    in_flight: deque[Future[int]] = deque()
    try:
        for chunk, part in chunks:
            while len(in_flight) >= COMMITS_IN_FLIGHT:
                yield _first_done(in_flight)
            in_flight.append(sender.submit(commit_chunk, client, chunk, part))
        while in_flight:
            yield _first_done(in_flight)
    finally:
        # On an error, an interrupt or a caller that stopped early, not waiting for the call still
        # in flight: it ends on its own.
        sender.shutdown(wait=not in_flight, cancel_futures=True)


class CommitPipeline:
    """Chunks committed as they come, up to COMMITS_IN_FLIGHT calls at once: `add` waits only
    while that many are in flight; `finish` waits for the rest and gives the raw records deleted.
    The first failed call is raised by the `add` or `finish` that meets it. Close it (`with`)."""

    def __init__(self, client: DbApiClient) -> None:
        self.client = client
        self.sender = ThreadPoolExecutor(COMMITS_IN_FLIGHT, thread_name_prefix="commit")
        self.in_flight: deque[Future[int]] = deque()
        self.deleted = 0

    def add(self, chunk: pa.Table, part: Part) -> None:
        while len(self.in_flight) >= COMMITS_IN_FLIGHT:
            self.deleted += _first_done(self.in_flight)
        self.in_flight.append(self.sender.submit(commit_chunk, self.client, chunk, part))

    def finish(self) -> int:
        while self.in_flight:
            self.deleted += _first_done(self.in_flight)
        return self.deleted

    def __enter__(self) -> CommitPipeline:
        return self

    def __exit__(self, *_exc: object) -> None:
        # As `commit_each`: not waiting for a call still in flight after an error; it ends alone.
        self.sender.shutdown(wait=not self.in_flight, cancel_futures=True)


def _first_done(in_flight: deque[Future[int]]) -> int:
    """The first call's raw records deleted, once it ends; it leaves `in_flight` only then, so a
    call interrupted while waited for still counts as in flight."""
    deleted = committed(in_flight[0])
    in_flight.popleft()
    return deleted


def committed(call: Future[int]) -> int:
    """The raw records a commit running in another thread deleted, once it ends; its error if it
    failed. Waited for in half-second steps: an interrupt (Ctrl-C in the kernel) whose handler ran
    on another thread is then raised within half a second, not when the call ends."""
    while not call.done():
        wait([call], timeout=0.5)
    return call.result()
