"""The asyncio db-api client (`grpc.aio`), for the FastAPI web app.

Same calls and results as `DbApiClient`; every call has a deadline and UNAVAILABLE is retried.
`write` also takes an async iterable of tables, so an upload can be streamed without holding
it in memory whole.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
import pandas as pd
import pyarrow as pa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipeline_lib.client.tls import ClientTls
from pipeline_lib.settings import Settings, db_api_token, get_settings
from pipeline_lib.wire import requests as req
from pipeline_lib.wire.proto import dbapi_pb2 as pb
from pipeline_lib.wire.proto import dbapi_pb2_grpc
from pipeline_lib.wire.requests import (
    CommitResult,
    DbApiCallError,
    Filter,
    InsertResult,
    LeaseResult,
    Tabular,
    WriteResult,
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _raises_call_error(method: F) -> F:
    @functools.wraps(method)
    async def wrapper(self: AsyncDbApiClient, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except grpc.aio.AioRpcError as exc:
            raise DbApiCallError(self.address, exc.code(), exc.details() or "") from None

    return wrapper  # type: ignore[return-value]


async def _chunks(
    data: Tabular | Iterable[Tabular] | AsyncIterable[Tabular], batch_size: int
) -> AsyncIterator[pa.Table]:
    if isinstance(data, AsyncIterable):
        async for part in data:
            for chunk in req.iter_chunks(part, batch_size):
                yield chunk
    else:
        for chunk in req.iter_chunks(data, batch_size):
            yield chunk


class AsyncDbApiClient:
    def __init__(
        self,
        address: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        stream_timeout: float = 120.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        tls: ClientTls | None = None,
    ) -> None:
        """Create inside a running event loop (e.g. at app start-up); close at shutdown.

        `timeout` bounds each unary call; `stream_timeout` a whole scan or write, including the
        time an async source takes to produce it, so a slow source cannot hold a db-api stream for
        long: write such a source batch by batch, a call each (as bulk uploads do). `tls` makes
        the channel TLS."""
        self.address = address
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._metadata = req.metadata(token)
        self._max_payload = max_message_bytes // 2
        options = req.channel_options(max_message_bytes)
        if tls is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(address, tls.credentials(), options=options)
        self._stub = dbapi_pb2_grpc.DbApiStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> AsyncDbApiClient:
        settings = settings or get_settings()
        kwargs.setdefault("tls", ClientTls.from_settings(settings))
        return cls(
            settings.db_api_address,
            db_api_token(settings),
            max_message_bytes=settings.db_api_max_message_mb * 1024 * 1024,
            **kwargs,
        )

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncDbApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _unary(self, rpc: Callable[..., Any], request: Any) -> Any:
        return await rpc(request, timeout=self.timeout, metadata=self._metadata)

    @_raises_call_error
    async def insert_one(self, collection: str, document: dict) -> InsertResult:
        document = req.with_id(document)
        request = pb.InsertOneRequest(collection=collection, document_bson=req.encode_document(document))
        reply = await self._unary(self._stub.InsertOne, request)
        return InsertResult(reply.id, reply.inserted, req.decode_document(reply.document_bson))

    @_raises_call_error
    async def get(self, collection: str, doc_id: str) -> dict | None:
        reply = await self._unary(self._stub.Get, pb.GetRequest(collection=collection, id=doc_id))
        return req.decode_document(reply.document_bson) if reply.found else None

    @_raises_call_error
    async def count(self, collection: str, filter: Filter = None) -> int:
        request = pb.CountRequest(collection=collection, filter=req.conditions(filter))
        return (await self._unary(self._stub.Count, request)).count

    @_raises_call_error
    async def high_water_mark(self, collection: str) -> int:
        return (await self._unary(self._stub.Count, pb.CountRequest(collection=collection))).high_water_mark

    @_raises_call_error
    async def delete_ids(self, collection: str, ids: Sequence[str]) -> int:
        request = pb.DeleteIdsRequest(collection=collection, ids=list(ids))
        return (await self._unary(self._stub.DeleteIds, request)).deleted

    async def write(
        self,
        collection: str,
        data: Tabular | Iterable[Tabular] | AsyncIterable[Tabular],
        *,
        mode: str = "insert",
        key: str | None = None,
        batch_size: int = req.DEFAULT_WRITE_BATCH,
    ) -> WriteResult:
        """Stream tables in batches, from memory or from an async source (e.g. an upload)."""
        req.check_write_mode(mode)
        failures: list[Exception] = []

        async def requests() -> AsyncIterator[pb.WriteBatchesRequest]:
            try:
                async for chunk in _chunks(data, batch_size):
                    for request in req.chunk_requests(chunk, collection, mode, key, self._max_payload):
                        yield request
            except Exception as exc:
                failures.append(exc)  # grpc.aio would turn it into a bare CancelledError
                raise

        try:
            reply = await self._stub.WriteBatches(
                requests(), timeout=self.stream_timeout, metadata=self._metadata
            )
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            if failures:
                raise failures[0] from None
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise DbApiCallError(self.address, exc.code(), exc.details() or "") from None
        return req.write_result(reply)

    async def scan_batches(self, collection: str, **options: Any) -> AsyncIterator[pa.RecordBatch]:
        request = req.scan_request(collection, **options)
        call = self._stub.Scan(request, timeout=self.stream_timeout, metadata=self._metadata)
        try:
            async for reply in call:
                yield req.scan_batch(reply)
        except grpc.aio.AioRpcError as exc:
            raise DbApiCallError(self.address, exc.code(), exc.details() or "") from None

    async def scan(self, collection: str, **options: Any) -> pa.Table:
        """Options as for `DbApiClient.scan`."""
        batches = [batch async for batch in self.scan_batches(collection, **options)]
        return req.batches_to_table(batches, options.get("schema"))

    async def scan_pandas(
        self, collection: str, *, arrow_strings: bool = True, **options: Any
    ) -> pd.DataFrame:
        return req.table_to_pandas(await self.scan(collection, **options), arrow_strings=arrow_strings)

    @_raises_call_error
    async def commit_clean(
        self,
        cleaned: Tabular | None,
        quarantine: Tabular | None,
        raw_ids: Sequence[str],
        *,
        key: str = "submission_id",
    ) -> CommitResult:
        request = req.commit_clean_request(cleaned, quarantine, raw_ids, key)
        reply = await self._stub.CommitClean(request, timeout=self.stream_timeout, metadata=self._metadata)
        return req.commit_result(reply)

    @_raises_call_error
    async def put_document(self, collection: str, doc_id: str, document: dict) -> bool:
        request = pb.PutDocumentRequest(collection=collection, id=doc_id, json=req.document_json(document))
        return (await self._unary(self._stub.PutDocument, request)).created

    @_raises_call_error
    async def get_document(self, collection: str, doc_id: str) -> dict | None:
        request = pb.GetDocumentRequest(collection=collection, id=doc_id)
        reply = await self._unary(self._stub.GetDocument, request)
        return req.document_from_json(reply.json) if reply.found else None

    @_raises_call_error
    async def list_documents(
        self, collection: str, filter: Filter = None, *, limit: int = 100, newest_first: bool = False
    ) -> list[dict]:
        request = pb.ListDocumentsRequest(
            collection=collection, filter=req.conditions(filter), limit=limit, newest_first=newest_first
        )
        reply = await self._unary(self._stub.ListDocuments, request)
        return [req.document_from_json(text) for text in reply.json]

    @_raises_call_error
    async def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> LeaseResult:
        request = pb.AcquireLeaseRequest(name=name, holder=holder, ttl_seconds=ttl_seconds)
        reply = await self._unary(self._stub.AcquireLease, request)
        return LeaseResult(reply.acquired, reply.holder, reply.expires_at, reply.generation)

    @_raises_call_error
    async def release_lease(self, name: str, holder: str) -> bool:
        request = pb.ReleaseLeaseRequest(name=name, holder=holder)
        return (await self._unary(self._stub.ReleaseLease, request)).released

    @_raises_call_error
    async def health(self, service: str = "") -> str:
        reply = await self._unary(self._health.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
