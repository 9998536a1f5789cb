"""From stored pages of BSON to what callers get: filtered documents, or Arrow IPC batches.

Turning BSON into Arrow costs a few microseconds per record of pure Python work, which holds the
GIL; `PageEncoder` spreads it over worker processes so one scan, or several partitioned scans,
use more than one core. The functions here are pure; only `PageEncoder` owns processes.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import pyarrow as pa

from db_api import c_pages
from db_api.filters import Condition, matches
from pipeline_lib.parent_watch import on_parent_exit
from pipeline_lib.wire import arrow_codec, bson_codec
from pipeline_lib.wire.errors import Unavailable

log = logging.getLogger(__name__)


def split_by_bytes(pages: Iterator[list[bytes]], budget: int) -> Iterator[list[bytes]]:
    """Pages cut so that none holds more than `budget` bytes of BSON (one document at least):
    a page of large documents must still fit in one gRPC message."""
    for page in pages:
        start, size = 0, 0
        for index, blob in enumerate(page):
            if size + len(blob) > budget and index > start:
                yield page[start:index]
                start, size = index, 0
            size += len(blob)
        if start < len(page):
            yield page[start:] if start else page


def decode_matching(blobs: Sequence[bytes], conditions: Sequence[Condition]) -> list[dict]:
    docs = bson_codec.decode_many(blobs)
    if conditions:
        docs = [doc for doc in docs if matches(doc, conditions)]
    return docs


# Cells (rows times columns) of one batch. A page is cut by its BSON bytes, but documents that
# each name other fields make a column per field, null in every other row: 8,000 of them, 200 KB
# of BSON, made 64 million cells (3.5 GB, and a reply too large to send).
MAX_CELLS_PER_BATCH = 2_000_000


@dataclass(frozen=True)
class PageFormat:
    """How a scan wants its batches; picklable, so worker processes receive it."""

    conditions: tuple[Condition, ...] = ()
    columns: tuple[str, ...] = ()
    as_text: bool = False
    schema_ipc: bytes = b""
    max_ipc_bytes: int = 0  # a batch's Arrow IPC is halved until it fits (0: no limit)


def encode_page(blobs: Sequence[bytes], fmt: PageFormat) -> list[tuple[bytes, int]]:
    """One page of stored BSON as Arrow IPC streams of the matching rows, with their counts: one
    stream, or several where the page's columns times rows would pass MAX_CELLS_PER_BATCH or its
    IPC `fmt.max_ipc_bytes`."""
    return encode_stream(b"".join(blobs), len(blobs), fmt)


def encode_stream(stream: bytes, count: int, fmt: PageFormat) -> list[tuple[bytes, int]]:
    """As `encode_page`, for a page of `count` documents given as their BSON one after another:
    how a page crosses to a worker process, as one bytes object to copy rather than a list of
    10,000 to pickle object by object (handing a million raw records' pages to the workers took the
    db-api's main process 0.55 s of CPU, now 0.25 s)."""
    schema = arrow_codec.schema_from_bytes(fmt.schema_ipc) if fmt.schema_ipc else None
    built = _c_page(stream, count, fmt, schema)
    if built is not None:
        return [(built, count)]
    docs = decode_matching([stream], fmt.conditions)  # BSON documents one after another decode as one
    fixed = len(schema) if schema is not None else len(fmt.columns) + 1 if fmt.columns else 0
    encoded = []
    for part in _by_cells(docs, fixed):
        encoded.extend(_encoded(part, fmt, schema))
    return encoded


def _c_page(stream: bytes, count: int, fmt: PageFormat, schema: pa.Schema | None) -> bytes | None:
    """The page as one IPC stream built in C (`c_pages`), when the scan wants text, boolean and
    double columns only, filters nothing, and the page holds those types and fits one batch; else
    None."""
    if not count or fmt.conditions or schema is None or not c_pages.takes(schema, fmt.as_text):
        return None
    if count * len(schema) > MAX_CELLS_PER_BATCH:
        return None
    batch = c_pages.stream_batch(stream, count, schema, fmt.as_text)
    if batch is None:
        return None
    ipc = arrow_codec.table_to_ipc(batch)
    return ipc if not fmt.max_ipc_bytes or len(ipc) <= fmt.max_ipc_bytes else None


def _by_cells(docs: list[dict], fixed_columns: int) -> Iterator[list[dict]]:
    """`docs` in runs whose rows times columns stay within MAX_CELLS_PER_BATCH (one document at
    least); `fixed_columns` when a projection or schema sets them, else the fields the run names."""
    if len(docs) * (fixed_columns or len(set().union(*docs))) <= MAX_CELLS_PER_BATCH:
        yield docs  # every ordinary page
        return
    start, names = 0, set[str]()
    for index, doc in enumerate(docs):
        if not fixed_columns:
            names.update(doc)
        columns = fixed_columns or len(names)
        if index > start and (index - start + 1) * columns > MAX_CELLS_PER_BATCH:
            yield docs[start:index]
            start, names = index, set(doc)
    if start < len(docs):
        yield docs[start:]


def _encoded(docs: list[dict], fmt: PageFormat, schema: pa.Schema | None) -> list[tuple[bytes, int]]:
    batch = arrow_codec.documents_to_batch(docs, fmt.columns, as_text=fmt.as_text, schema=schema)
    ipc = arrow_codec.table_to_ipc(batch)
    if not fmt.max_ipc_bytes or len(ipc) <= fmt.max_ipc_bytes or len(docs) == 1:
        return [(ipc, len(docs))]
    half = len(docs) // 2
    return [*_encoded(docs[:half], fmt, schema), *_encoded(docs[half:], fmt, schema)]


def truncate(ipc: bytes, rows: int) -> bytes:
    """The first `rows` rows of an IPC stream (for a scan's limit)."""
    return arrow_codec.table_to_ipc(arrow_codec.ipc_to_table(ipc).slice(0, rows))


def ipc_batches(
    pages: Iterator[list[bytes]], encoder: PageEncoder, fmt: PageFormat, *, page_bytes: int, limit: int
) -> Iterator[bytes]:
    """A scan's answer: its pages cut to fit a message (`page_bytes` of BSON), encoded as Arrow IPC
    batches, empty ones left out, with at most `limit` rows in all (0: no limit)."""
    remaining = limit or None
    for ipc, rows in encoder.encode(split_by_bytes(pages, page_bytes), fmt):
        if not rows:
            continue
        if remaining is not None and rows >= remaining:
            yield truncate(ipc, remaining) if rows > remaining else ipc
            return
        if remaining is not None:
            remaining -= rows
        yield ipc


_SAMPLE = {
    "_id": "warm-up",
    "text": "a",
    "whole": 1,
    "real": 1.5,
    "flag": True,
    "none": None,
    "when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    "nested": {"list": [1, 2]},
}


def _warm_up() -> None:
    """Runs in a new worker at start-up: encodes a page of one document both ways, so that what a
    first scan imports is imported now (pyarrow imports pandas on its first conversion of Python
    values: ~0.3 s, which the first scan after a start waited for in every worker)."""
    blobs = [bson_codec.encode(_SAMPLE)]
    encode_page(blobs, PageFormat())
    encode_page(blobs, PageFormat(as_text=True))
    text = pa.schema([("_id", pa.string()), ("text", pa.string())])  # and pymongoarrow's (c_pages)
    encode_page(blobs[:1], PageFormat(schema_ipc=text.serialize().to_pybytes()))


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: leave when the db-api is gone, even after `kill -9` of it; ignore
    Ctrl-C, which a terminal sends to its whole group: the db-api stops its workers itself (`close`),
    where each would otherwise print a KeyboardInterrupt into its log. Started with Ctrl-C blocked
    (`_new_pool`), so one that comes while it starts is dropped here too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    on_parent_exit(parent_pid, lambda: os._exit(0), name="exit-with-parent")


class PageEncoder:
    """Runs `encode_page` over a scan's pages in `workers` processes, yielding in page order.

    With workers=0 everything runs in the calling thread. Read-ahead is bounded, so a slow
    reader holds at most a few pages in memory.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # "spawn": forking a process that runs gRPC threads is unsafe.
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        # The workers start as these are submitted, from this thread, with its signal mask: Ctrl-C
        # stays blocked in them until their initializer ignores it.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for _ in range(self.workers):
                pool.submit(_warm_up)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pool

    def encode(self, pages: Iterator[list[bytes]], fmt: PageFormat) -> Iterator[tuple[bytes, int]]:
        if self._pool is None:
            for blobs in pages:
                yield from encode_page(blobs, fmt)
            return
        pool = self._pool
        pending: collections.deque[Future] = collections.deque()
        try:
            for blobs in pages:
                pending.append(pool.submit(encode_stream, b"".join(blobs), len(blobs), fmt))
                if len(pending) > 2 * self.workers:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool:
            log.error("a scan worker process died; starting new ones")
            if self._pool is pool:
                self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            raise Unavailable("a scan worker process died; the scan can be retried") from None
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
