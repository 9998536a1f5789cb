"""The gRPC servicer: translates requests to store calls and store errors to gRPC statuses.

It holds no storage logic and never knows which backend is behind the `Store`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import grpc

from db_api import request_documents
from db_api.collections import check_collection, scans_as_text
from db_api.filters import Condition, parse_condition
from db_api.scan_pages import PageEncoder, PageFormat, ipc_batches
from db_api.store.base import CallEnded, Fence, ScanSpec, Store, WriteCounts, while_wanted
from pipeline_lib.wire import arrow_codec, bson_codec
from pipeline_lib.wire.errors import DbApiError, InvalidArgument, TooLarge
from pipeline_lib.wire.proto import dbapi_pb2 as pb
from pipeline_lib.wire.proto import dbapi_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 2000
MAX_BATCH_SIZE = 100_000
MAX_LIST = 10_000
LIST_PAGE = 1000  # documents a list reads at a time, however few it answers with
MAX_COLUMNS = 1024  # a scan's projection or schema: each column costs per document read
MAX_INSERT_EACH = 1000
MAX_LEASE_SECONDS = 7 * 24 * 3600

_OPERATORS = {
    pb.OPERATOR_EQ: "eq",
    pb.OPERATOR_NE: "ne",
    pb.OPERATOR_LT: "lt",
    pb.OPERATOR_LTE: "lte",
    pb.OPERATOR_GT: "gt",
    pb.OPERATOR_GTE: "gte",
    pb.OPERATOR_IN: "in",
    pb.OPERATOR_EXISTS: "exists",
    pb.OPERATOR_PREFIX: "prefix",
}

F = TypeVar("F", bound=Callable[..., Any])


def _cancelled(method: str) -> None:
    """A client that went away (cancelled, past its deadline, channel closed) is normal: one line."""
    log.info("rpc cancelled", extra={"rpc": method})


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> None:
    if isinstance(exc, CallEnded) or (isinstance(exc, grpc.RpcError) and not context.is_active()):
        # A read that stopped for a caller who left, or what gRPC's request iterator raises once
        # the client has cancelled the call.
        _cancelled(method)
        context.abort(grpc.StatusCode.CANCELLED, f"{method} was cancelled by its client")
    if isinstance(exc, DbApiError):
        log.warning("rpc refused", extra={"rpc": method, "code": exc.code.name, "error": str(exc)})
        context.abort(exc.code, str(exc))
    log.exception("rpc failed", extra={"rpc": method})
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(exc).__name__}: {exc}")


def _rpc(method: F) -> F:
    """Answer every failure with a status and a message a person can act on."""
    name = method.__name__
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from method(self, request, context)
            except GeneratorExit:  # gRPC drops a stream whose client went away
                if not context.is_active():
                    _cancelled(name)
                raise
            except Exception as exc:
                _abort(context, name, exc)

        return streaming  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            _abort(context, name, exc)

    return unary  # type: ignore[return-value]


MAX_CONDITIONS = 32
MAX_FILTER_JSON_BYTES = 4 << 20  # in all: a MongoDB query must stay under 16 MiB


def conditions_from_proto(filters: Sequence[pb.Condition]) -> list[Condition]:
    if len(filters) > MAX_CONDITIONS:
        raise InvalidArgument(f"a filter has {len(filters)} conditions; at most {MAX_CONDITIONS}")
    if sum(len(cond.value_json) for cond in filters) > MAX_FILTER_JSON_BYTES:
        raise InvalidArgument("a filter's values are over the limit: at most 4 MiB of JSON in all")
    parsed = []
    for cond in filters:
        if cond.op not in _OPERATORS:
            raise InvalidArgument(f"filter on {cond.field!r} has no valid operator")
        parsed.append(parse_condition(cond.field, _OPERATORS[cond.op], cond.value_json))
    return parsed


def _fence(request: pb.CommitCleanRequest | pb.PutDocumentRequest) -> Fence | None:
    """The write's fence, judged now; None for a write that claims no lease."""
    if not request.HasField("fence"):
        return None
    lease = bson_codec.check_id(request.fence.lease, "fence lease")
    if request.fence.generation < 1:
        raise InvalidArgument(f"the fence of lease {lease} has no generation (AcquireLease gives one)")
    return Fence(lease, request.fence.generation, time.time())


def _sent_document(blob: bytes) -> tuple[dict, bytes | None]:
    """A document to insert, checked, with an `_id` (assigned here if it came without one), and its
    request bytes when they are the document as stored (it came with its `_id`), else None."""
    doc = bson_codec.decode(blob)
    given_id = "_id" in doc
    doc.setdefault("_id", bson_codec.new_id())
    return bson_codec.check_document(doc), blob if given_id else None


def _inserted(stored: dict, inserted: bool, sent: bytes | None) -> pb.InsertOneResponse:
    # Inserted as sent: the request's own bytes are the stored document (the common path).
    stored_bson = sent if inserted and sent is not None else bson_codec.encode(stored)
    return pb.InsertOneResponse(id=stored["_id"], inserted=inserted, document_bson=stored_bson)


def _refused(exc: InvalidArgument) -> pb.InsertOutcome:
    return pb.InsertOutcome(status_code=exc.code.value[0], status_message=str(exc))


def _deadline(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline as a `time.monotonic()` instant, None if it set none: an insert it has
    given up on (and may resend under a new id) must not be stored after it left."""
    left = context.time_remaining()
    # gRPC reports a call without a deadline as an immense time left.
    return None if left is None or left > 365 * 24 * 3600 else time.monotonic() + left


def _lease_and_holder(request: pb.AcquireLeaseRequest | pb.ReleaseLeaseRequest) -> tuple[str, str]:
    return bson_codec.check_id(request.name, "lease name"), bson_codec.check_id(request.holder, "holder")


class DbApiServicer(dbapi_pb2_grpc.DbApiServicer):
    def __init__(
        self, store: Store, encoder: PageEncoder | None = None, max_message_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.store = store
        self.encoder = encoder or PageEncoder(workers=0)
        # Arrow is usually smaller than the BSON it comes from; a quarter leaves ample margin.
        self.page_bytes = max_message_bytes // 4
        # A list's answer is one message: its documents' JSON, less room for the framing.
        self.list_bytes = max_message_bytes - max_message_bytes // 16

    @_rpc
    def InsertOne(self, request: pb.InsertOneRequest, context: grpc.ServicerContext) -> pb.InsertOneResponse:
        collection = check_collection(request.collection)
        doc, sent = _sent_document(request.document_bson)
        return _inserted(*self.store.insert_one(collection, doc, _deadline(context)), sent)

    @_rpc
    def InsertEach(
        self, request: pb.InsertEachRequest, context: grpc.ServicerContext
    ) -> pb.InsertEachResponse:
        collection = check_collection(request.collection)
        if len(request.documents_bson) > MAX_INSERT_EACH:
            raise InvalidArgument(
                f"InsertEach takes at most {MAX_INSERT_EACH} documents a call, "
                f"got {len(request.documents_bson)}"
            )
        checked: list[tuple[dict, bytes | None] | InvalidArgument] = []
        for blob in request.documents_bson:
            try:
                checked.append(_sent_document(blob))
            except InvalidArgument as exc:  # this document alone is refused
                checked.append(exc)
        valid = [item for item in checked if not isinstance(item, InvalidArgument)]
        stored = iter(self.store.insert_each(collection, [doc for doc, _ in valid], _deadline(context)))
        outcomes = []
        for item in checked:
            if isinstance(item, InvalidArgument):
                outcomes.append(_refused(item))
                continue
            result = next(stored)
            if isinstance(result, InvalidArgument):
                outcomes.append(_refused(result))
                continue
            doc, inserted = result
            outcomes.append(pb.InsertOutcome(result=_inserted(doc, inserted, item[1])))
        return pb.InsertEachResponse(outcomes=outcomes)

    @_rpc
    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:
        doc = self.store.get(check_collection(request.collection), bson_codec.check_id(request.id, "id"))
        if doc is None:
            return pb.GetResponse(found=False)
        return pb.GetResponse(found=True, document_bson=bson_codec.encode(doc))

    @_rpc
    def Count(self, request: pb.CountRequest, context: grpc.ServicerContext) -> pb.CountResponse:
        collection = check_collection(request.collection)
        count = self.store.count(collection, conditions_from_proto(request.filter), context.is_active)
        return pb.CountResponse(count=count, high_water_mark=self.store.high_water_mark(collection))

    @_rpc
    def DeleteIds(self, request: pb.DeleteIdsRequest, context: grpc.ServicerContext) -> pb.DeleteIdsResponse:
        collection = check_collection(request.collection)
        ids = [bson_codec.check_id(i, "id") for i in request.ids]
        return pb.DeleteIdsResponse(deleted=self.store.delete_ids(collection, ids))

    @_rpc
    def WriteBatches(
        self, request_iterator: Iterator[pb.WriteBatchesRequest], context: grpc.ServicerContext
    ) -> pb.WriteBatchesResponse:
        messages, total = 0, WriteCounts()
        collection, upsert, key = "", False, ""
        for request in request_iterator:
            if messages == 0:
                collection = check_collection(request.collection)
                if request.mode not in (pb.WRITE_MODE_INSERT, pb.WRITE_MODE_UPSERT):
                    raise InvalidArgument("WriteBatches needs mode insert or upsert in its first message")
                upsert = request.mode == pb.WRITE_MODE_UPSERT
                key = request.key
            try:
                docs = request_documents.from_ipc(request.arrow_ipc, key, f"batch in message {messages + 1}")
                counts = self.store.write(collection, docs, upsert=upsert)
            except DbApiError as exc:
                if messages:
                    exc.args = (
                        f"{exc} ({messages} earlier messages were committed; "
                        "writes are idempotent, so the stream can be retried)",
                    )
                raise
            messages += 1
            total += counts
        return pb.WriteBatchesResponse(messages=messages, **asdict(total))

    @_rpc
    def Scan(self, request: pb.ScanRequest, context: grpc.ServicerContext) -> Iterator[pb.ScanResponse]:
        collection = check_collection(request.collection)
        partitions = request.partitions or 1
        if request.partition >= partitions:
            raise InvalidArgument(
                f"partition {request.partition} does not exist; partitions are 0..{partitions - 1}"
            )
        batch_size = request.batch_size or DEFAULT_BATCH_SIZE
        if batch_size > MAX_BATCH_SIZE:
            raise InvalidArgument(f"batch_size {batch_size} is above the limit of {MAX_BATCH_SIZE}")
        if request.limit >= 2**63:
            raise InvalidArgument(f"limit {request.limit} is too large; use 0 for no limit")
        if len(request.columns) > MAX_COLUMNS:
            raise InvalidArgument(f"a scan names {len(request.columns)} columns; at most {MAX_COLUMNS}")
        for column in request.columns:
            bson_codec.check_field_name(column)
        if request.column_types == pb.COLUMN_TYPES_DEFAULT:
            as_text = scans_as_text(collection)
        else:
            as_text = request.column_types == pb.COLUMN_TYPES_TEXT
        if request.arrow_schema:
            schema = arrow_codec.schema_from_bytes(request.arrow_schema)  # refuse a bad one before reading
            if len(schema) > MAX_COLUMNS:
                raise InvalidArgument(f"a scan's schema has {len(schema)} fields; at most {MAX_COLUMNS}")
        spec = ScanSpec(
            conditions=conditions_from_proto(request.filter),
            columns=list(request.columns),
            partition=request.partition,
            partitions=partitions,
            page_size=batch_size,
            limit=request.limit,
            newest_first=request.newest_first,
        )
        fmt = PageFormat(
            tuple(spec.conditions), tuple(spec.columns), as_text, request.arrow_schema, 2 * self.page_bytes
        )
        pages = while_wanted(self.store.scan_pages(collection, spec), context.is_active)
        for ipc in ipc_batches(pages, self.encoder, fmt, page_bytes=self.page_bytes, limit=spec.limit):
            yield pb.ScanResponse(arrow_ipc=ipc)

    @_rpc
    def CommitClean(
        self, request: pb.CommitCleanRequest, context: grpc.ServicerContext
    ) -> pb.CommitCleanResponse:
        key = request.key or "submission_id"
        cleaned = request_documents.from_ipc(request.cleaned_arrow_ipc, key, "cleaned batch")
        quarantine = request_documents.from_ipc(request.quarantine_arrow_ipc, key, "quarantine batch")
        raw_ids = [bson_codec.check_id(i, "raw id") for i in request.raw_ids]
        counts = self.store.commit_clean(cleaned, quarantine, raw_ids, fence=_fence(request))
        return pb.CommitCleanResponse(**asdict(counts))

    @_rpc
    def PutDocument(
        self, request: pb.PutDocumentRequest, context: grpc.ServicerContext
    ) -> pb.PutDocumentResponse:
        collection = check_collection(request.collection)
        doc = request_documents.from_json(request.json, bson_codec.check_id(request.id, "id"))
        counts = self.store.write(collection, [doc], upsert=True, fence=_fence(request))
        return pb.PutDocumentResponse(created=counts.inserted == 1)

    @_rpc
    def GetDocument(
        self, request: pb.GetDocumentRequest, context: grpc.ServicerContext
    ) -> pb.GetDocumentResponse:
        doc = self.store.get(check_collection(request.collection), bson_codec.check_id(request.id, "id"))
        if doc is None:
            return pb.GetDocumentResponse(found=False)
        return pb.GetDocumentResponse(found=True, json=request_documents.to_json(doc))

    @_rpc
    def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: grpc.ServicerContext
    ) -> pb.ListDocumentsResponse:
        collection = check_collection(request.collection)
        limit = request.limit or 100
        if limit > MAX_LIST:
            raise InvalidArgument(
                f"limit {limit} is above the maximum of {MAX_LIST}; use Scan for bulk reads"
            )
        spec = ScanSpec(
            conditions=conditions_from_proto(request.filter),
            page_size=max(limit, LIST_PAGE),
            limit=limit,
            newest_first=request.newest_first,
        )
        pages = self.store.scan(collection, spec, context.is_active)
        docs, size = [], 0
        for doc in (doc for page in pages for doc in page):
            docs.append(request_documents.to_json(doc))
            size += len(docs[-1])
            if size > self.list_bytes:  # stopped here, before gRPC refuses the whole answer
                raise TooLarge(
                    f"the {len(docs):,} documents listed so far of {collection} already come to more than "
                    f"{self.list_bytes >> 20} MiB, the most one answer carries; ask for fewer (limit) "
                    "or read them with Scan"
                )
        return pb.ListDocumentsResponse(json=docs)

    @_rpc
    def AcquireLease(
        self, request: pb.AcquireLeaseRequest, context: grpc.ServicerContext
    ) -> pb.AcquireLeaseResponse:
        name, holder = _lease_and_holder(request)
        if not 0 < request.ttl_seconds <= MAX_LEASE_SECONDS:
            raise InvalidArgument(
                f"ttl_seconds must be in (0, {MAX_LEASE_SECONDS}], got {request.ttl_seconds}"
            )
        lease = self.store.acquire_lease(name, holder, request.ttl_seconds, time.time())
        return pb.AcquireLeaseResponse(**asdict(lease))

    @_rpc
    def ReleaseLease(
        self, request: pb.ReleaseLeaseRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseLeaseResponse:
        name, holder = _lease_and_holder(request)
        return pb.ReleaseLeaseResponse(released=self.store.release_lease(name, holder))
