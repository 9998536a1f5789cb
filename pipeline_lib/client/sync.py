"""The synchronous db-api client: notebooks, the CLI and Spark use it.

Every call has a deadline; calls that find the service unavailable are retried (see
`db_requests`). Scans return Arrow tables or pandas DataFrames built batch by batch. A client
with a `fence` (a run's: `from_settings` takes it from WORKBENCH_RUN_FENCE) attaches it to
CommitClean and PutDocument, so those writes are refused once the run has lost its lease. With
`tls` (from the settings when WORKBENCH_DB_API_TLS_CA is set) the channel is TLS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    ColumnTypes,
    CommitResult,
    DbApiCallError,
    Fence,
    Filter,
    InsertResult,
    LeaseResult,
    Tabular,
    WriteResult,
)

F = TypeVar("F", bound=Callable[..., Any])


def _raises_call_error(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: DbApiClient, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except grpc.RpcError as exc:
            raise DbApiCallError(self.address, exc.code(), exc.details() or "") from None

    return wrapper  # type: ignore[return-value]


class DbApiClient:
    def __init__(
        self,
        address: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        stream_timeout: float = 3600.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        fence: Fence | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        """`timeout` bounds each unary call; `stream_timeout` bounds a whole scan or bulk write;
        `fence` goes with every CommitClean and PutDocument; `tls` makes the channel TLS."""
        self.address = address
        self.token = token
        self.fence = fence
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._metadata = req.metadata(token)
        self._max_payload = max_message_bytes // 2
        options = req.channel_options(max_message_bytes)
        if tls is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, tls.credentials(), options=options)
        self._stub = dbapi_pb2_grpc.DbApiStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> DbApiClient:
        settings = settings or get_settings()
        kwargs.setdefault("fence", Fence.from_environment())
        kwargs.setdefault("tls", ClientTls.from_settings(settings))
        return cls(
            settings.db_api_address,
            db_api_token(settings),
            max_message_bytes=settings.db_api_max_message_mb * 1024 * 1024,
            **kwargs,
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> DbApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unary(self, rpc: Callable[..., Any], request: Any) -> Any:
        return rpc(request, timeout=self.timeout, metadata=self._metadata)

    # -- documents -------------------------------------------------------------------------

    @_raises_call_error
    def insert_one(self, collection: str, document: dict) -> InsertResult:
        document = req.with_id(document)
        request = pb.InsertOneRequest(collection=collection, document_bson=req.encode_document(document))
        reply = self._unary(self._stub.InsertOne, request)
        return InsertResult(reply.id, reply.inserted, req.decode_document(reply.document_bson))

    @_raises_call_error
    def get(self, collection: str, doc_id: str) -> dict | None:
        reply = self._unary(self._stub.Get, pb.GetRequest(collection=collection, id=doc_id))
        return req.decode_document(reply.document_bson) if reply.found else None

    @_raises_call_error
    def count(self, collection: str, filter: Filter = None) -> int:
        return self._unary(
            self._stub.Count, pb.CountRequest(collection=collection, filter=req.conditions(filter))
        ).count

    @_raises_call_error
    def high_water_mark(self, collection: str) -> int:
        return self._unary(self._stub.Count, pb.CountRequest(collection=collection)).high_water_mark

    @_raises_call_error
    def delete_ids(self, collection: str, ids: Sequence[str]) -> int:
        return self._unary(
            self._stub.DeleteIds, pb.DeleteIdsRequest(collection=collection, ids=list(ids))
        ).deleted

    # -- bulk ------------------------------------------------------------------------------

    def write(
        self,
        collection: str,
        data: Tabular | Iterable[Tabular],
        *,
        mode: str = "insert",
        key: str | None = None,
        batch_size: int = req.DEFAULT_WRITE_BATCH,
    ) -> WriteResult:
        """Stream a table (or an iterable of tables) in batches; each batch commits atomically."""
        req.check_write_mode(mode)
        failures: list[Exception] = []

        def requests() -> Iterator[pb.WriteBatchesRequest]:
            try:
                for chunk in req.iter_chunks(data, batch_size):
                    yield from req.chunk_requests(chunk, collection, mode, key, self._max_payload)
            except Exception as exc:
                failures.append(exc)  # gRPC would report it only as "Exception iterating requests!"
                raise

        try:
            reply = self._stub.WriteBatches(requests(), timeout=self.stream_timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            if failures:
                raise failures[0] from None
            raise DbApiCallError(self.address, exc.code(), exc.details() or "") from None
        return req.write_result(reply)

    def scan_batches(self, collection: str, **options: Any) -> Iterator[pa.RecordBatch]:
        """Record batches as they arrive; options as for `scan`."""
        request = req.scan_request(collection, **options)
        try:
            for reply in self._stub.Scan(request, timeout=self.stream_timeout, metadata=self._metadata):
                yield req.scan_batch(reply)
        except grpc.RpcError as exc:
            raise DbApiCallError(self.address, exc.code(), exc.details() or "") from None

    def scan(
        self,
        collection: str,
        *,
        columns: Sequence[str] = (),
        filter: Filter = None,
        batch_size: int = 0,
        partition: int = 0,
        partitions: int = 1,
        column_types: ColumnTypes = "default",
        schema: pa.Schema | None = None,
        limit: int = 0,
        newest_first: bool = False,
    ) -> pa.Table:
        """Read a collection (or partition `partition` of `partitions`) as one Arrow table."""
        batches = list(
            self.scan_batches(
                collection,
                columns=columns,
                filter=filter,
                batch_size=batch_size,
                partition=partition,
                partitions=partitions,
                column_types=column_types,
                schema=schema,
                limit=limit,
                newest_first=newest_first,
            )
        )
        return req.batches_to_table(batches, schema)

    def scan_pandas(self, collection: str, *, arrow_strings: bool = True, **options: Any) -> pd.DataFrame:
        """`scan` as a DataFrame; text columns are `string[pyarrow]` unless arrow_strings=False."""
        return req.table_to_pandas(self.scan(collection, **options), arrow_strings=arrow_strings)

    @_raises_call_error
    def commit_clean(
        self,
        cleaned: Tabular | None,
        quarantine: Tabular | None,
        raw_ids: Sequence[str],
        *,
        key: str = "submission_id",
    ) -> CommitResult:
        request = req.commit_clean_request(cleaned, quarantine, raw_ids, key, self.fence)
        return req.commit_result(
            self._stub.CommitClean(request, timeout=self.stream_timeout, metadata=self._metadata)
        )

    # -- small JSON documents ----------------------------------------------------------------

    @_raises_call_error
    def put_document(self, collection: str, doc_id: str, document: dict) -> bool:
        request = req.put_document_request(collection, doc_id, document, self.fence)
        return self._unary(self._stub.PutDocument, request).created

    @_raises_call_error
    def get_document(self, collection: str, doc_id: str) -> dict | None:
        reply = self._unary(self._stub.GetDocument, pb.GetDocumentRequest(collection=collection, id=doc_id))
        return req.document_from_json(reply.json) if reply.found else None

    @_raises_call_error
    def list_documents(
        self, collection: str, filter: Filter = None, *, limit: int = 100, newest_first: bool = False
    ) -> list[dict]:
        request = pb.ListDocumentsRequest(
            collection=collection, filter=req.conditions(filter), limit=limit, newest_first=newest_first
        )
        return [req.document_from_json(text) for text in self._unary(self._stub.ListDocuments, request).json]

    # -- leases and health -------------------------------------------------------------------

    @_raises_call_error
    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> LeaseResult:
        request = pb.AcquireLeaseRequest(name=name, holder=holder, ttl_seconds=ttl_seconds)
        reply = self._unary(self._stub.AcquireLease, request)
        return LeaseResult(reply.acquired, reply.holder, reply.expires_at, reply.generation)

    @_raises_call_error
    def release_lease(self, name: str, holder: str) -> bool:
        return self._unary(self._stub.ReleaseLease, pb.ReleaseLeaseRequest(name=name, holder=holder)).released

    @_raises_call_error
    def health(self, service: str = "") -> str:
        """The serving status name, e.g. 'SERVING'."""
        reply = self._unary(self._health.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
