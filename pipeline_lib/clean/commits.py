"""One atomic CommitClean of a chunk of a clean's output, as both engines commit it, and the
wait for a commit running beside the clean."""

from __future__ import annotations

from concurrent.futures import Future, wait
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


def committed(call: Future[int]) -> int:
    """The raw records a commit running in another thread deleted, once it ends; its error if it
    failed. Waited for in half-second steps: an interrupt (Ctrl-C in the kernel) whose handler ran
    on another thread is then raised within half a second, not when the call ends."""
    while not call.done():
        wait([call], timeout=0.5)
    return call.result()
