"""The synchronous db-api client: notebooks, jobs, the CLI, dashboards and Spark use it.

Every call has a deadline; calls that find the service unavailable are retried (see
`wire.requests`). Scans return Arrow tables or pandas DataFrames built batch by batch. A client
with a `fence` (a run's: `from_settings` takes it from WORKBENCH_RUN_FENCE) attaches it to
CommitClean and PutDocument, so those writes are refused once the run has lost its lease. With
`tls` (from the settings when WORKBENCH_DB_API_TLS_CA is set) the channel is TLS. Requests, replies
and errors are the core's (`client.core`); this face only makes the calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar, Unpack

import grpc
import pyarrow as pa

from pipeline_lib.client import core
from pipeline_lib.settings import Settings
from pipeline_lib.wire import requests as req
from pipeline_lib.wire.requests import (
    CommitResult,
    DbApiCallError,
    Document,
    Fence,
    Filter,
    InsertRefused,
    InsertResult,
    LeaseResult,
    ScanOptions,
    Tabular,
    WriteResult,
)

if TYPE_CHECKING:  # imported by `scan_pandas` (wire.requests): commands that make no DataFrame start faster
    import pandas as pd

__all__ = ["DbApiCallError", "DbApiClient"]

R = TypeVar("R")


class DbApiClient(core.ClientCore):
    """A blocking client; `with DbApiClient.from_settings() as client:` closes its channel."""

    TIMEOUT = 30.0
    STREAM_TIMEOUT = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **options: Any) -> Self:
        """A client of the db-api the settings name, with the fence of the run this process
        works for (WORKBENCH_RUN_FENCE) unless `fence` is given."""
        options.setdefault("fence", Fence.from_environment())
        return super().from_settings(settings, **options)

    def _open_channel(self) -> grpc.Channel:
        return self.endpoint.open_channel(grpc.insecure_channel, grpc.secure_channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, call: core.Call[R]) -> R:
        try:
            reply = self._start(call)
        except grpc.RpcError as exc:
            raise self._error(exc, call) from None
        return call.read(reply)

    # -- documents -------------------------------------------------------------------------

    def insert_one(self, collection: str, document: Mapping[str, Any]) -> InsertResult:
        return self._call(core.insert_one(collection, document))

    def insert_each(
        self, collection: str, documents: Sequence[Mapping[str, Any]]
    ) -> list[InsertResult | InsertRefused]:
        """`insert_one` for each document, in one call: each gets its result or its refusal."""
        return self._call(core.insert_each(collection, [core.insert_bson(d) for d in documents]))

    def get(self, collection: str, doc_id: str) -> Document | None:
        return self._call(core.get(collection, doc_id))

    def count(self, collection: str, filter: Filter = None) -> int:
        return self._call(core.count(collection, filter))

    def high_water_mark(self, collection: str) -> int:
        return self._call(core.high_water_mark(collection))

    def delete_ids(self, collection: str, ids: Sequence[str]) -> int:
        return self._call(core.delete_ids(collection, ids))

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
        call = core.write(
            collection, data, mode=mode, key=key, batch_size=batch_size, max_payload=self.max_payload
        )
        return self._call(call)

    def scan_batches(self, collection: str, **options: Unpack[ScanOptions]) -> Iterator[pa.RecordBatch]:
        """Record batches as they arrive; options as for `scan`."""
        call = core.scan(collection, options)
        try:
            for reply in self._start(call):
                yield call.read(reply)
        except grpc.RpcError as exc:
            raise self._error(exc, call) from None

    def scan(self, collection: str, **options: Unpack[ScanOptions]) -> pa.Table:
        """Read a collection (or partition `partition` of `partitions`) as one Arrow table; the
        options are `wire.requests.ScanOptions` (columns, filter, schema, limit, ...)."""
        return req.batches_to_table(list(self.scan_batches(collection, **options)), options.get("schema"))

    def scan_pandas(
        self, collection: str, *, arrow_strings: bool = True, **options: Unpack[ScanOptions]
    ) -> pd.DataFrame:
        """`scan` as a DataFrame; text columns are `string[pyarrow]` unless arrow_strings=False."""
        return req.table_to_pandas(self.scan(collection, **options), arrow_strings=arrow_strings)

    def commit_clean(
        self,
        cleaned: Tabular | None,
        quarantine: Tabular | None,
        raw_ids: Sequence[str],
        *,
        key: str = "submission_id",
    ) -> CommitResult:
        """Commit cleaned and quarantined records and delete their raw ids, in one atomic unit."""
        return self._call(core.commit_clean(cleaned, quarantine, raw_ids, key, self.fence))

    # -- small JSON documents ----------------------------------------------------------------

    def put_document(self, collection: str, doc_id: str, document: Mapping[str, Any]) -> bool:
        return self._call(core.put_document(collection, doc_id, document, self.fence))

    def get_document(self, collection: str, doc_id: str) -> Document | None:
        return self._call(core.get_document(collection, doc_id))

    def list_documents(
        self, collection: str, filter: Filter = None, *, limit: int = 100, newest_first: bool = False
    ) -> list[Document]:
        return self._call(core.list_documents(collection, filter, limit, newest_first))

    # -- leases and health -------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> LeaseResult:
        return self._call(core.acquire_lease(name, holder, ttl_seconds))

    def release_lease(self, name: str, holder: str) -> bool:
        return self._call(core.release_lease(name, holder))

    def health(self, service: str = "") -> str:
        """The serving status name, e.g. 'SERVING'."""
        return self._call(core.health(service))
