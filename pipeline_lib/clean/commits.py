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
    """Commit `chunk` as `part` and delete its raw ids, in atomic units: the raw records deleted.
    A kept record and the resubmissions it absorbed are one row, so they always go in the same
    call; a chunk too large for one call goes in slices of whole rows (`fitting`)."""
    return sum(_commit_whole(client, piece, part) for piece in fitting(chunk, client.max_payload))


def _commit_whole(client: DbApiClient, chunk: pa.Table, part: Part) -> int:
    ids = chunk.column("submission_id").to_pylist()
    if part == "cleaned":
        ids += [i for others in chunk.column("duplicates").to_pylist() for i in others or []]
        return client.commit_clean(chunk, None, ids).raw_deleted
    if part == "quarantine":
        return client.commit_clean(None, chunk, ids).raw_deleted
    return client.commit_clean(None, None, ids).raw_deleted


def fitting(chunk: pa.Table, max_bytes: int) -> Iterator[pa.Table]:
    """`chunk` in slices of whole rows, each (with its raw ids, which its columns hold too, so
    twice its Arrow size bounds the call) within `max_bytes`; a row larger alone goes alone, for the
    db-api to refuse with its reason. Chunks are cut by rows (`batch_size`), and rows of a
    quarantine keep values as typed, up to the contract's limits: a few hundred of the longest fill
    a message."""
    if 2 * chunk.nbytes <= max_bytes or chunk.num_rows <= 1:
        yield chunk
        return
    half = chunk.num_rows // 2
    yield from fitting(chunk.slice(0, half), max_bytes)
    yield from fitting(chunk.slice(half), max_bytes)


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
    with CommitPipeline(client) as pipeline:
        for chunk, part in chunks:
            yield from pipeline.add(chunk, part)
        yield from pipeline.drain()


class CommitPipeline:
    """Chunks committed as they come, up to COMMITS_IN_FLIGHT calls at once (`commit_each`, or a
    caller with other work between its chunks): `add` waits only while that many are in flight.
    The first failed call is raised by the `add` or `drain` that meets it. Use it with `with`: on
    an error, an interrupt or a caller that stopped early, the call still in flight is not waited
    for; it ends on its own. With `client` None (a dry run), nothing is sent and nothing deleted."""

    def __init__(self, client: DbApiClient | None) -> None:
        self.client = client
        self.sender = ThreadPoolExecutor(COMMITS_IN_FLIGHT, thread_name_prefix="commit")
        self.in_flight: deque[Future[int]] = deque()

    def add(self, chunk: pa.Table, part: Part) -> list[int]:
        """Start committing `chunk` as `part`: the raw records deleted by each call it waited for."""
        done: list[int] = []
        if self.client is None:
            return done
        while len(self.in_flight) >= COMMITS_IN_FLIGHT:
            done.append(_first_done(self.in_flight))
        self.in_flight.append(self.sender.submit(commit_chunk, self.client, chunk, part))
        return done

    def add_all(self, chunks: Iterable[pa.Table], part: Part) -> int:
        """Start committing each of `chunks` as `part`: the raw records deleted by the calls that
        ended meanwhile."""
        return sum(sum(self.add(chunk, part)) for chunk in chunks)

    def drain(self) -> Iterator[int]:
        """Each call still in flight, once it ends: the raw records it deleted, in order."""
        while self.in_flight:
            yield _first_done(self.in_flight)

    def __enter__(self) -> CommitPipeline:
        return self

    def __exit__(self, *_exc: object) -> None:
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
