"""The client side of the db-api's wire: channel options, request building, results and errors.

`pipeline_lib.client.core` builds every call from these; the sync and asyncio faces only make it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, Unpack

import bson
import grpc
import pyarrow as pa
from bson import json_util

from pipeline_lib.settings import db_api_replicas, ip_family
from pipeline_lib.wire import arrow_codec, bson_codec
from pipeline_lib.wire.bson_codec import DECODE_OPTIONS, new_id, to_text
from pipeline_lib.wire.errors import InvalidArgument
from pipeline_lib.wire.proto import dbapi_pb2 as pb

if TYPE_CHECKING:  # pandas is imported where a DataFrame is made: a command that makes none starts faster
    import pandas as pd

Tabular: TypeAlias = "pd.DataFrame | pa.Table | pa.RecordBatch"
# A filter: {"field": value} for equality, or (field, op, value) triples with op one of
# eq ne lt lte gt gte in exists prefix.
Filter = Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None
ColumnTypes = Literal["default", "as_stored", "text"]
# A document as BSON decodes it (or as JSON documents are read).
Document = dict[str, Any]

DEFAULT_WRITE_BATCH = 10_000

_OPS = {
    "eq": pb.OPERATOR_EQ,
    "ne": pb.OPERATOR_NE,
    "lt": pb.OPERATOR_LT,
    "lte": pb.OPERATOR_LTE,
    "gt": pb.OPERATOR_GT,
    "gte": pb.OPERATOR_GTE,
    "in": pb.OPERATOR_IN,
    "exists": pb.OPERATOR_EXISTS,
    "prefix": pb.OPERATOR_PREFIX,
}
_COLUMN_TYPES = {
    "default": pb.COLUMN_TYPES_DEFAULT,
    "as_stored": pb.COLUMN_TYPES_AS_STORED,
    "text": pb.COLUMN_TYPES_TEXT,
}

# Retry calls that found the service unavailable (restarting, briefly overloaded). Every db-api
# write is idempotent, so a retried call never writes twice. gRPC allows at most 5 attempts; their
# waits (0.25, 0.5, 1 and 2 s, each ±20%) span about 3.75 s, under the web app's 5 s deadline so a
# db-api that stays down is still reported as unavailable rather than as a timeout.
_SERVICE_CONFIG = {
    # Calls spread over every address of the target (replicas listed, or a name resolving to
    # several); an address that fails is skipped until it answers again.
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "workbench.dbapi.v1.DbApi"}, {"service": "grpc.health.v1.Health"}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.25s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


class DbApiCallError(RuntimeError):
    """A db-api call failed; `code` is the gRPC status, the message says why (and what to check
    when client and db-api disagree about TLS)."""

    def __init__(self, address: str, code: grpc.StatusCode, details: str) -> None:
        hint = _tls_hint(details) if code == grpc.StatusCode.UNAVAILABLE else None
        super().__init__(f"db-api at {address}: {code.name}: {details}" + (f" ({hint})" if hint else ""))
        self.code = code
        self.details = details


# What gRPC's connection errors mean when client and db-api disagree about TLS.
_TLS_HINTS = (
    (
        "CERTIFICATE_VERIFY_FAILED",
        "the db-api's certificate is not trusted: WORKBENCH_DB_API_TLS_CA must hold the CA that signed it",
    ),
    (
        "not in peer certificate",
        "the db-api's certificate does not name the host in WORKBENCH_DB_API_ADDRESS",
    ),
    (
        "WRONG_VERSION_NUMBER",
        "the db-api does not serve TLS at this address: start it with WORKBENCH_DB_API_TLS_CERT and "
        "WORKBENCH_DB_API_TLS_KEY, or unset WORKBENCH_DB_API_TLS_CA",
    ),
    (
        "Socket closed",
        "the db-api closed the connection: does the db-api serve TLS? Then set WORKBENCH_DB_API_TLS_CA; "
        "does it ask for client certificates? Then set WORKBENCH_DB_API_TLS_CLIENT_CERT and "
        "WORKBENCH_DB_API_TLS_CLIENT_KEY to one its CA signed",
    ),
)


def _tls_hint(details: str) -> str | None:
    return next((hint for marker, hint in _TLS_HINTS if marker in details), None)


def grpc_target(address: str) -> str:
    """The gRPC target of a db-api address (`settings.db_api_replicas`): a `host:port` as it is,
    several as gRPC's `ipv4:`/`ipv6:` list, which round_robin spreads calls over."""
    replicas = db_api_replicas(address)
    if len(replicas) == 1:
        return replicas[0]
    return f"{ip_family(replicas[0])}:{','.join(replicas)}"


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        # Reconnect within a second of a restarted db-api coming back: by default the channel
        # waits 1 s, then 1.6 s, 2.6 s, ... between attempts, and a retry made while it waits fails
        # at once, so the attempts above could all be spent before the channel tried again.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


@dataclass(frozen=True)
class InsertResult:
    id: str
    inserted: bool
    document: Document


@dataclass(frozen=True)
class InsertRefused:
    """One document of an insert_each that the db-api refused on its own; the others went on."""

    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class WriteResult:
    messages: int
    inserted: int
    replaced: int
    skipped: int


@dataclass(frozen=True)
class CommitResult:
    cleaned: int
    quarantined: int
    raw_deleted: int
    transactional: bool


@dataclass(frozen=True)
class LeaseResult:
    acquired: bool
    holder: str
    expires_at: float
    generation: int = 0  # of the holding now; grows each time the lease is taken anew


# How a run hands its fence to the notebook it executes (and so to the kernel's clients).
FENCE_ENV = "WORKBENCH_RUN_FENCE"


@dataclass(frozen=True)
class Fence:
    """A run's claim to its lease: writes that carry it are refused (FAILED_PRECONDITION) once
    another holding of the lease has begun, so a run that lost its lease cannot write on."""

    lease: str
    generation: int

    def __str__(self) -> str:
        return f"{self.lease}:{self.generation}"

    @classmethod
    def parse(cls, text: str) -> Fence:
        """`LEASE:GENERATION`, as in WORKBENCH_RUN_FENCE (the lease name may hold colons)."""
        lease, _, generation = text.strip().rpartition(":")
        if not lease or not generation.isdigit() or int(generation) < 1:
            raise ValueError(f"{FENCE_ENV} must be LEASE:GENERATION (e.g. run:clean:3), got {text!r}")
        return cls(lease, int(generation))

    @classmethod
    def from_environment(cls) -> Fence | None:
        """The fence of the run this process works for (set by `workbench run`), if any."""
        text = os.environ.get(FENCE_ENV, "").strip()
        return cls.parse(text) if text else None


def fence_message(fence: Fence | None) -> pb.Fence | None:
    return pb.Fence(lease=fence.lease, generation=fence.generation) if fence is not None else None


def conditions(filter_: Filter) -> list[pb.Condition]:
    if not filter_:
        return []
    triples = [(f, "eq", v) for f, v in filter_.items()] if isinstance(filter_, Mapping) else filter_
    out = []
    for field, op, value in triples:
        if op not in _OPS:
            raise ValueError(f"unknown filter operator {op!r}; use one of {', '.join(_OPS)}")
        out.append(pb.Condition(field=field, op=_OPS[op], value_json=json.dumps(value)))
    return out


def _is_data_frame(data: object) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame means pandas is imported already
    return pandas is not None and isinstance(data, pandas.DataFrame)


def is_tabular(data: object) -> bool:
    """One table: an Arrow table or record batch, or a pandas DataFrame."""
    return isinstance(data, pa.Table | pa.RecordBatch) or _is_data_frame(data)


def to_arrow(data: Tabular) -> pa.Table:
    """An Arrow table of `data`, dictionary-encoded columns (pandas categories) as their values,
    which is what the db-api accepts."""
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif _is_data_frame(data):
        table = pa.Table.from_pandas(data, preserve_index=False)
    else:
        raise TypeError(f"expected a pandas DataFrame or an Arrow table, got {type(data).__name__}")
    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(field.type.value_type))
    return table


_WRITE_MODES = {"insert": pb.WRITE_MODE_INSERT, "upsert": pb.WRITE_MODE_UPSERT}


def check_write_mode(mode: str) -> None:
    if mode not in _WRITE_MODES:
        raise ValueError(f"mode must be 'insert' or 'upsert', got {mode!r}")


def iter_chunks(data: Tabular | Iterable[Tabular], batch_size: int) -> Iterator[pa.Table]:
    """Slices of at most batch_size rows from one table or a stream of them."""
    parts = [data] if is_tabular(data) else data
    for part in parts:
        table = to_arrow(part)
        for offset in range(0, table.num_rows, batch_size):
            yield table.slice(offset, batch_size)


def ipc_payloads(chunk: pa.Table, max_bytes: int) -> Iterator[bytes]:
    """The chunk as Arrow IPC, halved until each payload fits in `max_bytes` (wide rows)."""
    payload = arrow_codec.table_to_ipc(chunk)
    if len(payload) <= max_bytes or chunk.num_rows <= 1:
        yield payload
        return
    half = chunk.num_rows // 2
    yield from ipc_payloads(chunk.slice(0, half), max_bytes)
    yield from ipc_payloads(chunk.slice(half), max_bytes)


def chunk_requests(
    chunk: pa.Table, collection: str, mode: str, key: str | None, max_bytes: int
) -> Iterator[pb.WriteBatchesRequest]:
    """The messages for one chunk. Every message names the collection, mode and key (the service
    reads them from the first), so no caller has to track which message comes first."""
    for payload in ipc_payloads(chunk, max_bytes):
        yield pb.WriteBatchesRequest(
            collection=collection, mode=_WRITE_MODES[mode], key=key or "", arrow_ipc=payload
        )


def with_id(document: Mapping[str, Any]) -> Document:
    """The document with an `_id`, assigned here so that a retried insert cannot insert twice."""
    return dict(document) if "_id" in document else {"_id": new_id(), **document}


def write_result(response: pb.WriteBatchesResponse) -> WriteResult:
    return WriteResult(response.messages, response.inserted, response.replaced, response.skipped)


class ScanOptions(TypedDict, total=False):
    """What a scan may ask for besides the collection; every key is optional."""

    columns: Sequence[str]  # the fields to read (default: all)
    filter: Filter
    batch_size: int  # rows per reply (default 0: the service's)
    partition: int  # read partition `partition` of `partitions` (default 0 of 1: all)
    partitions: int
    column_types: ColumnTypes  # default "default"
    schema: pa.Schema | None  # the Arrow schema to cast to (default: inferred)
    limit: int  # at most this many documents (default 0: no limit)
    newest_first: bool


_SCAN_OPTIONS = ScanOptions.__optional_keys__


def scan_request(collection: str, **options: Unpack[ScanOptions]) -> pb.ScanRequest:
    unknown = set(options) - _SCAN_OPTIONS
    if unknown:  # a misspelt option would otherwise be ignored
        raise TypeError(f"unknown scan option(s) {sorted(unknown)}; known: {sorted(_SCAN_OPTIONS)}")
    schema = options.get("schema")
    return pb.ScanRequest(
        collection=collection,
        columns=list(options.get("columns", ())),
        filter=conditions(options.get("filter")),
        batch_size=options.get("batch_size", 0),
        partition=options.get("partition", 0),
        partitions=options.get("partitions", 1),
        column_types=_COLUMN_TYPES[options.get("column_types", "default")],
        arrow_schema=arrow_codec.schema_to_bytes(schema) if schema is not None else b"",
        limit=options.get("limit", 0),
        newest_first=options.get("newest_first", False),
    )


def scan_batch(response: pb.ScanResponse) -> pa.RecordBatch:
    table = arrow_codec.ipc_to_table(response.arrow_ipc, "scan reply")
    return table.combine_chunks().to_batches()[0]


def batches_to_table(batches: list[pa.RecordBatch], schema: pa.Schema | None) -> pa.Table:
    """One table from scanned batches. Batches infer their own types, so unify them."""
    if not batches:
        return schema.empty_table() if schema is not None else pa.table({"_id": pa.array([], pa.string())})
    first = batches[0].schema
    if all(batch.schema.equals(first) for batch in batches):
        return pa.Table.from_batches(batches)
    tables = [pa.Table.from_batches([batch]) for batch in batches]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.concat_tables(_text_where_kinds_differ(tables), promote_options="permissive")


def _text_where_kinds_differ(tables: list[pa.Table]) -> list[pa.Table]:
    """A column holding numbers in one batch and text in another becomes text everywhere, as the
    db-api does within one batch: no value is dropped."""
    kinds: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            if not pa.types.is_null(field.type):
                kinds.setdefault(field.name, set()).add(field.type)
    mixed = {name for name, types in kinds.items() if len(types) > 1}
    unified = []
    for table in tables:
        for name in mixed & set(table.column_names):
            index = table.schema.get_field_index(name)
            text = pa.array([to_text(v) for v in table.column(index).to_pylist()], type=pa.string())
            table = table.set_column(index, name, text)
        unified.append(table)
    return unified


def table_to_pandas(table: pa.Table, *, arrow_strings: bool = True) -> pd.DataFrame:
    """A DataFrame of the table. Text columns stay Arrow-backed (`string[pyarrow]`, the default
    string dtype from pandas 3 on): ~50x faster than a Python object per value, and smaller."""
    import pandas as pd

    strings = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    return table.to_pandas(types_mapper=strings.get if arrow_strings else None)


def commit_clean_request(
    cleaned: Tabular | None,
    quarantine: Tabular | None,
    raw_ids: Sequence[str],
    key: str,
    fence: Fence | None = None,
) -> pb.CommitCleanRequest:
    def ipc(data: Tabular | None) -> bytes:
        return arrow_codec.table_to_ipc(to_arrow(data)) if data is not None else b""

    return pb.CommitCleanRequest(
        cleaned_arrow_ipc=ipc(cleaned),
        quarantine_arrow_ipc=ipc(quarantine),
        raw_ids=list(raw_ids),
        key=key,
        fence=fence_message(fence),
    )


def put_document_request(
    collection: str, doc_id: str, document: Mapping[str, Any], fence: Fence | None = None
) -> pb.PutDocumentRequest:
    return pb.PutDocumentRequest(
        collection=collection, id=doc_id, json=document_json(document), fence=fence_message(fence)
    )


def commit_result(response: pb.CommitCleanResponse) -> CommitResult:
    return CommitResult(response.cleaned, response.quarantined, response.raw_deleted, response.transactional)


def encode_document(doc: Mapping[str, Any]) -> bytes:
    """As the db-api encodes documents (dates, decimals; the size limit): what it would refuse is
    refused here, before sending, as it would refuse it (INVALID_ARGUMENT, naming the document)."""
    try:
        return bson_codec.encode(doc)
    except InvalidArgument as exc:
        raise DbApiCallError("", grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None


def decode_document(data: bytes) -> Document:
    return bson.decode(data, codec_options=DECODE_OPTIONS)


def document_json(doc: Mapping[str, Any]) -> str:
    return json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS)


def document_from_json(text: str) -> Document:
    document: Document = json_util.loads(text, json_options=json_util.RELAXED_JSON_OPTIONS)
    return document
