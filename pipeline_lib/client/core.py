"""The db-api client's one core, under its two faces: `sync.DbApiClient` (notebooks, jobs, the CLI,
dashboards) and `aio.AsyncDbApiClient` (the web app).

The core makes no call itself. It holds where and how to reach the db-api (`Endpoint`), describes
every call as a `Call` (its request, built with `pipeline_lib.wire.requests`, and how to read its
reply), and turns what a failed call raised into an error a person can act on. A face opens its
kind of channel (`grpc` or `grpc.aio`) and makes the calls, so each of its methods is one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

import grpc
import pyarrow as pa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipeline_lib.client.tls import ClientTls
from pipeline_lib.settings import Settings, db_api_token, get_settings
from pipeline_lib.wire import requests as req
from pipeline_lib.wire.proto import dbapi_pb2 as pb
from pipeline_lib.wire.proto import dbapi_pb2_grpc

MIB = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 64 * MIB

R = TypeVar("R")
C = TypeVar("C")


@dataclass(frozen=True)
class Endpoint:
    """Where the db-api is and how to reach it. Spark's `workbench` source sends it to executors
    as options (`pipeline_lib.spark.source.db_api_options`) and reads it back from them."""

    address: str
    token: str | None = field(default=None, repr=False)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls: ClientTls | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Endpoint:
        """WORKBENCH_DB_API_ADDRESS, the token (setting or file), the message size and, when
        WORKBENCH_DB_API_TLS_CA is set, the TLS files (read and checked here)."""
        return cls(
            settings.db_api_address,
            db_api_token(settings),
            settings.db_api_max_message_mb * MIB,
            ClientTls.from_settings(settings),
        )

    def open_channel(self, insecure: Callable[..., C], secure: Callable[..., C]) -> C:
        """A channel made by `insecure` or, with `tls`, by `secure` (`grpc`'s or `grpc.aio`'s)."""
        options = req.channel_options(self.max_message_bytes)
        target = req.grpc_target(self.address)
        if self.tls is None:
            return insecure(target, options=options)
        if target != self.address:
            # A certificate names a host; a list of IP addresses names none to check it against.
            raise ValueError(
                "TLS to several db-api addresses: give one DNS name that resolves to every replica "
                "and that their certificates name"
            )
        return secure(target, self.tls.credentials(), options=options)


@dataclass(frozen=True)
class Call(Generic[R]):
    """One call: the RPC, its request (or, for a client stream, an iterator of requests) and how
    to read its reply (or, for a server stream, each reply)."""

    method: str
    request: Any
    read: Callable[[Any], R]
    service: str = "DbApi"  # or "Health"
    whole_stream: bool = False  # bounded by the stream deadline: it moves bulk data
    # What stopped a request iterator: gRPC reports it only as "Exception iterating requests!"
    # (grpc) or a bare CancelledError (grpc.aio).
    failures: list[Exception] = field(default_factory=list)


class ClientCore:
    """What both faces hold: the endpoint, the deadlines, the fence and the stubs on a channel.

    `timeout` bounds each unary call and `stream_timeout` a whole scan, bulk write or commit
    (None: the face's `TIMEOUT` and `STREAM_TIMEOUT`); `fence` goes with every fenced write
    (CommitClean, PutDocument); `tls` makes the channel TLS.
    """

    TIMEOUT: ClassVar[float]
    STREAM_TIMEOUT: ClassVar[float]

    def __init__(
        self,
        address: str,
        token: str | None = None,
        *,
        timeout: float | None = None,
        stream_timeout: float | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        fence: req.Fence | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.endpoint = Endpoint(address, token, max_message_bytes, tls)
        self.address, self.token = address, token
        self.fence = fence
        self.timeout = self.TIMEOUT if timeout is None else timeout
        self.stream_timeout = self.STREAM_TIMEOUT if stream_timeout is None else stream_timeout
        self._metadata = req.metadata(token)
        self.max_payload = max_message_bytes // 2  # data one call may carry: room for the rest of it
        self._channel = self._open_channel()
        self._stubs: dict[str, Any] = {
            "DbApi": dbapi_pb2_grpc.DbApiStub(self._channel),
            "Health": health_pb2_grpc.HealthStub(self._channel),
        }

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **options: Any) -> Self:
        """A client of the db-api the settings name; `options` as for the constructor."""
        return cls.for_endpoint(Endpoint.from_settings(settings or get_settings()), **options)

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, **options: Any) -> Self:
        """A client of `endpoint`; `options` as for the constructor (and before the endpoint's)."""
        options.setdefault("max_message_bytes", endpoint.max_message_bytes)
        options.setdefault("tls", endpoint.tls)
        return cls(endpoint.address, endpoint.token, **options)

    def _open_channel(self) -> Any:
        raise NotImplementedError  # each face opens its kind of channel

    def _start(self, call: Call[Any]) -> Any:
        """Start `call` on this face's channel: its reply, or (grpc.aio) an awaitable of it."""
        rpc = getattr(self._stubs[call.service], call.method)
        deadline = self.stream_timeout if call.whole_stream else self.timeout
        return rpc(call.request, timeout=deadline, metadata=self._metadata)

    def _error(self, exc: BaseException, call: Call[Any]) -> BaseException:
        """What to raise for `exc`: the error that stopped the call's requests, if one did, else a
        `DbApiCallError` for a gRPC error; anything else (a cancelled task) as it is."""
        if call.failures:
            return call.failures[0]
        if isinstance(exc, grpc.RpcError):
            return req.DbApiCallError(self.address, exc.code(), exc.details() or "")
        return exc


# -- the calls ---------------------------------------------------------------------------------


def insert_bson(document: Mapping[str, Any]) -> bytes:
    """The document as inserts send it: with its `_id` set here, so that a retry cannot insert twice."""
    return req.encode_document(req.with_id(document))


def insert_one(collection: str, document: Mapping[str, Any]) -> Call[req.InsertResult]:
    request = pb.InsertOneRequest(collection=collection, document_bson=insert_bson(document))
    return Call(
        "InsertOne",
        request,
        lambda reply: req.InsertResult(reply.id, reply.inserted, req.decode_document(reply.document_bson)),
    )


def insert_each(
    collection: str, documents_bson: Sequence[bytes]
) -> Call[list[req.InsertResult | req.InsertRefused]]:
    """`insert_one` for each document (`insert_bson`) in one call; each gets its result or refusal."""
    request = pb.InsertEachRequest(collection=collection, documents_bson=documents_bson)
    return Call("InsertEach", request, lambda reply: _insert_outcomes(reply, len(documents_bson)))


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _insert_outcomes(reply: pb.InsertEachResponse, sent: int) -> list[req.InsertResult | req.InsertRefused]:
    if len(reply.outcomes) != sent:
        raise req.DbApiCallError(
            "", grpc.StatusCode.INTERNAL, f"{len(reply.outcomes)} outcomes for {sent} documents"
        )
    outcomes: list[req.InsertResult | req.InsertRefused] = []
    for outcome in reply.outcomes:
        if outcome.status_code:
            code = _STATUS_CODES.get(outcome.status_code, grpc.StatusCode.UNKNOWN)
            outcomes.append(req.InsertRefused(code, outcome.status_message))
        else:
            r = outcome.result
            outcomes.append(req.InsertResult(r.id, r.inserted, req.decode_document(r.document_bson)))
    return outcomes


def get(collection: str, doc_id: str) -> Call[req.Document | None]:
    return Call(
        "Get",
        pb.GetRequest(collection=collection, id=doc_id),
        lambda reply: req.decode_document(reply.document_bson) if reply.found else None,
    )


def count(collection: str, filter: req.Filter = None) -> Call[int]:
    return Call(
        "Count", pb.CountRequest(collection=collection, filter=req.conditions(filter)), lambda r: r.count
    )


def high_water_mark(collection: str) -> Call[int]:
    return Call("Count", pb.CountRequest(collection=collection), lambda reply: reply.high_water_mark)


def delete_ids(collection: str, ids: Sequence[str]) -> Call[int]:
    return Call("DeleteIds", pb.DeleteIdsRequest(collection=collection, ids=list(ids)), lambda r: r.deleted)


def write(
    collection: str,
    data: req.Tabular | Iterable[req.Tabular],
    *,
    mode: str,
    key: str | None,
    batch_size: int,
    max_payload: int,
) -> Call[req.WriteResult]:
    """A client stream of `data` in chunks of `batch_size` rows, each message under `max_payload`."""
    req.check_write_mode(mode)
    failures: list[Exception] = []

    def requests() -> Iterator[pb.WriteBatchesRequest]:
        try:
            for chunk in req.iter_chunks(data, batch_size):
                yield from req.chunk_requests(chunk, collection, mode, key, max_payload)
        except Exception as exc:
            failures.append(exc)
            raise

    return Call("WriteBatches", requests(), req.write_result, whole_stream=True, failures=failures)


def scan(collection: str, options: req.ScanOptions) -> Call[pa.RecordBatch]:
    """A server stream of record batches."""
    return Call("Scan", req.scan_request(collection, **options), req.scan_batch, whole_stream=True)


def commit_clean(
    cleaned: req.Tabular | None,
    quarantine: req.Tabular | None,
    raw_ids: Sequence[str],
    key: str,
    fence: req.Fence | None,
) -> Call[req.CommitResult]:
    request = req.commit_clean_request(cleaned, quarantine, raw_ids, key, fence)
    return Call("CommitClean", request, req.commit_result, whole_stream=True)


def put_document(
    collection: str, doc_id: str, document: Mapping[str, Any], fence: req.Fence | None
) -> Call[bool]:
    request = req.put_document_request(collection, doc_id, document, fence)
    return Call("PutDocument", request, lambda reply: reply.created)


def get_document(collection: str, doc_id: str) -> Call[req.Document | None]:
    return Call(
        "GetDocument",
        pb.GetDocumentRequest(collection=collection, id=doc_id),
        lambda reply: req.document_from_json(reply.json) if reply.found else None,
    )


def list_documents(
    collection: str, filter: req.Filter, limit: int, newest_first: bool
) -> Call[list[req.Document]]:
    request = pb.ListDocumentsRequest(
        collection=collection, filter=req.conditions(filter), limit=limit, newest_first=newest_first
    )
    return Call("ListDocuments", request, lambda reply: [req.document_from_json(text) for text in reply.json])


def acquire_lease(name: str, holder: str, ttl_seconds: float) -> Call[req.LeaseResult]:
    return Call(
        "AcquireLease",
        pb.AcquireLeaseRequest(name=name, holder=holder, ttl_seconds=ttl_seconds),
        lambda reply: req.LeaseResult(reply.acquired, reply.holder, reply.expires_at, reply.generation),
    )


def release_lease(name: str, holder: str) -> Call[bool]:
    return Call("ReleaseLease", pb.ReleaseLeaseRequest(name=name, holder=holder), lambda r: r.released)


def health(service: str = "") -> Call[str]:
    """The serving status by name, e.g. 'SERVING'."""
    return Call(
        "Check",
        health_pb2.HealthCheckRequest(service=service),
        lambda reply: health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status),
        service="Health",
    )
