"""Concurrent single inserts share db-api calls.

A web app under load makes many `insert_one` calls at once, and most of the db-api's share of each
was the fixed cost of a gRPC call on both sides. Here an insert that finds a call of its collection
under way waits for that call to end and goes in the next `InsertEach` with every other insert that
arrived meanwhile. A lone insert never waits (there is no timer); a busy collection sends batches as
large as the load makes them, up to a count and a size.

Each caller gets its own outcome: a document the db-api refuses fails only its caller; a call that
fails as a whole (db-api unavailable, deadline) fails every caller that shared it, and, as with a
failed `InsertOne`, some of those records may be stored: each has its `_id` already, so a retry
cannot store one twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pipeline_lib.wire.requests import InsertRefused, InsertResult

# What one InsertEach may carry: below the db-api's MAX_INSERT_EACH and far below a gRPC message.
MAX_DOCUMENTS = 256
MAX_BYTES = 4 * 1024 * 1024

SendEach = Callable[[str, Sequence[bytes]], Awaitable[list[InsertResult | InsertRefused]]]


@dataclass
class _Waiting:
    document_bson: bytes
    outcome: asyncio.Future[InsertResult]


class InsertCoalescer:
    """`send(collection, documents_bson)` makes one InsertEach call; `refused(outcome)` is the
    exception a refused document's caller gets. Create and use inside one event loop."""

    def __init__(
        self,
        send: SendEach,
        refused: Callable[[InsertRefused], Exception],
        *,
        max_documents: int = MAX_DOCUMENTS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._send = send
        self._refused = refused
        self.max_documents = max_documents
        self.max_bytes = max_bytes
        self._waiting: dict[str, list[_Waiting]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}

    async def insert(self, collection: str, document_bson: bytes) -> InsertResult:
        waiting = _Waiting(document_bson, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(collection, []).append(waiting)
        if collection not in self._senders:
            self._senders[collection] = asyncio.create_task(self._send_all(collection))
        # Shielded: a caller that goes away must not cancel the outcome the sender will set.
        try:
            return await asyncio.shield(waiting.outcome)
        except asyncio.CancelledError:
            # Nobody reads this outcome now; read it when it comes, or asyncio logs its error.
            waiting.outcome.add_done_callback(_read)
            raise

    def _next_batch(self, collection: str) -> list[_Waiting]:
        queue = self._waiting[collection]
        count = size = 0
        for waiting in queue:
            if count == self.max_documents or (count and size + len(waiting.document_bson) > self.max_bytes):
                break
            count += 1
            size += len(waiting.document_bson)
        batch, self._waiting[collection] = queue[:count], queue[count:]
        return batch

    async def _send_all(self, collection: str) -> None:
        batch: list[_Waiting] = []
        try:
            while self._waiting.get(collection):
                batch = self._next_batch(collection)
                try:
                    outcomes = await self._send(collection, [w.document_bson for w in batch])
                except Exception as exc:
                    _fail(batch, exc)
                    continue
                for waiting, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, InsertRefused):
                        _fail([waiting], self._refused(outcome))
                    elif not waiting.outcome.done():
                        waiting.outcome.set_result(outcome)
                batch = []
        except BaseException as exc:  # cancelled (the client closing): nobody may wait forever
            _fail(batch + self._waiting.pop(collection, []), exc)
            raise
        finally:
            del self._senders[collection]
            self._waiting.pop(collection, None)


def _fail(batch: list[_Waiting], exc: BaseException) -> None:
    for waiting in batch:
        if waiting.outcome.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            waiting.outcome.cancel()
        else:
            waiting.outcome.set_exception(exc)


def _read(outcome: asyncio.Future[InsertResult]) -> None:
    if not outcome.cancelled():
        outcome.exception()
