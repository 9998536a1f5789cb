"""The asyncio db-api client (`grpc.aio`), for the FastAPI web app.

Only as wide as the web app needs: documents one at a time, counts, listings, bulk writes and
health. Each method has the signature and result of its `DbApiClient` twin: both faces build their
calls and read their replies in the same core (`client.core`). Every call has a deadline and
UNAVAILABLE is retried.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar

import grpc

from pipeline_lib.client import core
from pipeline_lib.client.coalesce import MAX_BYTES, InsertCoalescer
from pipeline_lib.wire.requests import (
    DEFAULT_WRITE_BATCH,
    DbApiCallError,
    Document,
    Filter,
    InsertRefused,
    InsertResult,
    Tabular,
    WriteResult,
)

R = TypeVar("R")


class AsyncDbApiClient(core.ClientCore):
    """Create inside a running event loop (e.g. at app start-up); close at shutdown.

    `stream_timeout` bounds a whole write, including the time its source takes to produce it, so
    a slow source cannot hold a db-api stream for long: write such a source batch by batch, a call
    each (as bulk uploads do)."""

    TIMEOUT = 10.0
    STREAM_TIMEOUT = 120.0

    def _open_channel(self) -> grpc.aio.Channel:
        return self.endpoint.open_channel(grpc.aio.insecure_channel, grpc.aio.secure_channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, call: core.Call[R]) -> R:
        try:
            reply = await self._start(call)
        except (grpc.RpcError, asyncio.CancelledError) as exc:  # grpc.aio cancels when a source fails
            raise self._error(exc, call) from None
        return call.read(reply)

    async def insert_one(self, collection: str, document: Mapping[str, Any]) -> InsertResult:
        """Concurrent calls share db-api calls (`coalesce`); each gets its own result or error."""
        return await self._inserts.insert(collection, core.insert_bson(document))

    async def insert_each(
        self, collection: str, documents: Sequence[Mapping[str, Any]]
    ) -> list[InsertResult | InsertRefused]:
        """`insert_one` for each document, in one call: each gets its result or its refusal."""
        return await self._insert_each(collection, [core.insert_bson(d) for d in documents])

    async def _insert_each(
        self, collection: str, documents_bson: Sequence[bytes]
    ) -> list[InsertResult | InsertRefused]:
        return await self._call(core.insert_each(collection, documents_bson))

    @functools.cached_property
    def _inserts(self) -> InsertCoalescer:
        # A call's documents stay under the message size both ends accept.
        return InsertCoalescer(self._insert_each, self._refusal, max_bytes=min(MAX_BYTES, self.max_payload))

    def _refusal(self, refused: InsertRefused) -> DbApiCallError:
        return DbApiCallError(self.address, refused.code, refused.message)

    async def get(self, collection: str, doc_id: str) -> Document | None:
        return await self._call(core.get(collection, doc_id))

    async def count(self, collection: str, filter: Filter = None) -> int:
        return await self._call(core.count(collection, filter))

    async def write(
        self,
        collection: str,
        data: Tabular | Iterable[Tabular],
        *,
        mode: str = "insert",
        key: str | None = None,
        batch_size: int = DEFAULT_WRITE_BATCH,
    ) -> WriteResult:
        """Stream a table (or an iterable of tables) in batches; each batch commits atomically."""
        call = core.write(
            collection, data, mode=mode, key=key, batch_size=batch_size, max_payload=self.max_payload
        )
        return await self._call(call)

    async def get_document(self, collection: str, doc_id: str) -> Document | None:
        return await self._call(core.get_document(collection, doc_id))

    async def list_documents(
        self, collection: str, filter: Filter = None, *, limit: int = 100, newest_first: bool = False
    ) -> list[Document]:
        return await self._call(core.list_documents(collection, filter, limit, newest_first))

    async def health(self, service: str = "") -> str:
        """The serving status name, e.g. 'SERVING'."""
        return await self._call(core.health(service))
