from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_UNSPECIFIED: _ClassVar[Operator]
    OPERATOR_EQ: _ClassVar[Operator]
    OPERATOR_NE: _ClassVar[Operator]
    OPERATOR_LT: _ClassVar[Operator]
    OPERATOR_LTE: _ClassVar[Operator]
    OPERATOR_GT: _ClassVar[Operator]
    OPERATOR_GTE: _ClassVar[Operator]
    OPERATOR_IN: _ClassVar[Operator]
    OPERATOR_EXISTS: _ClassVar[Operator]
    OPERATOR_PREFIX: _ClassVar[Operator]

class WriteMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WRITE_MODE_UNSPECIFIED: _ClassVar[WriteMode]
    WRITE_MODE_INSERT: _ClassVar[WriteMode]
    WRITE_MODE_UPSERT: _ClassVar[WriteMode]

class ColumnTypes(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_TYPES_DEFAULT: _ClassVar[ColumnTypes]
    COLUMN_TYPES_AS_STORED: _ClassVar[ColumnTypes]
    COLUMN_TYPES_TEXT: _ClassVar[ColumnTypes]
OPERATOR_UNSPECIFIED: Operator
OPERATOR_EQ: Operator
OPERATOR_NE: Operator
OPERATOR_LT: Operator
OPERATOR_LTE: Operator
OPERATOR_GT: Operator
OPERATOR_GTE: Operator
OPERATOR_IN: Operator
OPERATOR_EXISTS: Operator
OPERATOR_PREFIX: Operator
WRITE_MODE_UNSPECIFIED: WriteMode
WRITE_MODE_INSERT: WriteMode
WRITE_MODE_UPSERT: WriteMode
COLUMN_TYPES_DEFAULT: ColumnTypes
COLUMN_TYPES_AS_STORED: ColumnTypes
COLUMN_TYPES_TEXT: ColumnTypes

class Condition(_message.Message):
    __slots__ = ("field", "op", "value_json")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: Operator
    value_json: str
    def __init__(self, field: _Optional[str] = ..., op: _Optional[_Union[Operator, str]] = ..., value_json: _Optional[str] = ...) -> None: ...

class InsertOneRequest(_message.Message):
    __slots__ = ("collection", "document_bson")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_BSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    document_bson: bytes
    def __init__(self, collection: _Optional[str] = ..., document_bson: _Optional[bytes] = ...) -> None: ...

class InsertOneResponse(_message.Message):
    __slots__ = ("id", "inserted", "document_bson")
    ID_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_BSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    inserted: bool
    document_bson: bytes
    def __init__(self, id: _Optional[str] = ..., inserted: _Optional[bool] = ..., document_bson: _Optional[bytes] = ...) -> None: ...

class InsertEachRequest(_message.Message):
    __slots__ = ("collection", "documents_bson")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_BSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    documents_bson: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, collection: _Optional[str] = ..., documents_bson: _Optional[_Iterable[bytes]] = ...) -> None: ...

class InsertOutcome(_message.Message):
    __slots__ = ("status_code", "status_message", "result")
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    status_code: int
    status_message: str
    result: InsertOneResponse
    def __init__(self, status_code: _Optional[int] = ..., status_message: _Optional[str] = ..., result: _Optional[_Union[InsertOneResponse, _Mapping]] = ...) -> None: ...

class InsertEachResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[InsertOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[InsertOutcome, _Mapping]]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: str
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("found", "document_bson")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_BSON_FIELD_NUMBER: _ClassVar[int]
    found: bool
    document_bson: bytes
    def __init__(self, found: _Optional[bool] = ..., document_bson: _Optional[bytes] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("collection", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count", "high_water_mark")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    HIGH_WATER_MARK_FIELD_NUMBER: _ClassVar[int]
    count: int
    high_water_mark: int
    def __init__(self, count: _Optional[int] = ..., high_water_mark: _Optional[int] = ...) -> None: ...

class DeleteIdsRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteIdsResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class WriteBatchesRequest(_message.Message):
    __slots__ = ("collection", "mode", "key", "arrow_ipc")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    collection: str
    mode: WriteMode
    key: str
    arrow_ipc: bytes
    def __init__(self, collection: _Optional[str] = ..., mode: _Optional[_Union[WriteMode, str]] = ..., key: _Optional[str] = ..., arrow_ipc: _Optional[bytes] = ...) -> None: ...

class WriteBatchesResponse(_message.Message):
    __slots__ = ("messages", "inserted", "replaced", "skipped")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    messages: int
    inserted: int
    replaced: int
    skipped: int
    def __init__(self, messages: _Optional[int] = ..., inserted: _Optional[int] = ..., replaced: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("collection", "columns", "filter", "batch_size", "partition", "partitions", "column_types", "arrow_schema", "limit", "newest_first")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    COLUMN_TYPES_FIELD_NUMBER: _ClassVar[int]
    ARROW_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    collection: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    filter: _containers.RepeatedCompositeFieldContainer[Condition]
    batch_size: int
    partition: int
    partitions: int
    column_types: ColumnTypes
    arrow_schema: bytes
    limit: int
    newest_first: bool
    def __init__(self, collection: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., filter: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., batch_size: _Optional[int] = ..., partition: _Optional[int] = ..., partitions: _Optional[int] = ..., column_types: _Optional[_Union[ColumnTypes, str]] = ..., arrow_schema: _Optional[bytes] = ..., limit: _Optional[int] = ..., newest_first: _Optional[bool] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("arrow_ipc",)
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ...) -> None: ...

class Fence(_message.Message):
    __slots__ = ("lease", "generation")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    lease: str
    generation: int
    def __init__(self, lease: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class CommitCleanRequest(_message.Message):
    __slots__ = ("cleaned_arrow_ipc", "quarantine_arrow_ipc", "raw_ids", "key", "fence")
    CLEANED_ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    RAW_IDS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    cleaned_arrow_ipc: bytes
    quarantine_arrow_ipc: bytes
    raw_ids: _containers.RepeatedScalarFieldContainer[str]
    key: str
    fence: Fence
    def __init__(self, cleaned_arrow_ipc: _Optional[bytes] = ..., quarantine_arrow_ipc: _Optional[bytes] = ..., raw_ids: _Optional[_Iterable[str]] = ..., key: _Optional[str] = ..., fence: _Optional[_Union[Fence, _Mapping]] = ...) -> None: ...

class CommitCleanResponse(_message.Message):
    __slots__ = ("cleaned", "quarantined", "raw_deleted", "transactional")
    CLEANED_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    RAW_DELETED_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONAL_FIELD_NUMBER: _ClassVar[int]
    cleaned: int
    quarantined: int
    raw_deleted: int
    transactional: bool
    def __init__(self, cleaned: _Optional[int] = ..., quarantined: _Optional[int] = ..., raw_deleted: _Optional[int] = ..., transactional: _Optional[bool] = ...) -> None: ...

class PutDocumentRequest(_message.Message):
    __slots__ = ("collection", "id", "json", "fence")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: str
    json: str
    fence: Fence
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[str] = ..., json: _Optional[str] = ..., fence: _Optional[_Union[Fence, _Mapping]] = ...) -> None: ...

class PutDocumentResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("collection", "id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: str
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetDocumentResponse(_message.Message):
    __slots__ = ("found", "json")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    found: bool
    json: str
    def __init__(self, found: _Optional[bool] = ..., json: _Optional[str] = ...) -> None: ...

class ListDocumentsRequest(_message.Message):
    __slots__ = ("collection", "filter", "limit", "newest_first")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: _containers.RepeatedCompositeFieldContainer[Condition]
    limit: int
    newest_first: bool
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., limit: _Optional[int] = ..., newest_first: _Optional[bool] = ...) -> None: ...

class ListDocumentsResponse(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, json: _Optional[_Iterable[str]] = ...) -> None: ...

class AcquireLeaseRequest(_message.Message):
    __slots__ = ("name", "holder", "ttl_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    holder: str
    ttl_seconds: float
    def __init__(self, name: _Optional[str] = ..., holder: _Optional[str] = ..., ttl_seconds: _Optional[float] = ...) -> None: ...

class AcquireLeaseResponse(_message.Message):
    __slots__ = ("acquired", "holder", "expires_at", "generation")
    ACQUIRED_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    acquired: bool
    holder: str
    expires_at: float
    generation: int
    def __init__(self, acquired: _Optional[bool] = ..., holder: _Optional[str] = ..., expires_at: _Optional[float] = ..., generation: _Optional[int] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("name", "holder")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    holder: str
    def __init__(self, name: _Optional[str] = ..., holder: _Optional[str] = ...) -> None: ...

class ReleaseLeaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...
