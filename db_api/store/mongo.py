"""The MongoDB store (pymongo): for production, a replica set or a sharded cluster.

Documents carry a hidden `_wb_seq` (allocated from a counter document) so that ordering,
partitions and the high-water mark mean the same as in the embedded store. `CommitClean` runs in
a transaction where the server has them; elsewhere it upserts first and deletes raw last, an
order that is safe to repeat after a crash.

A fenced write (a run's, naming its lease generation) checks the lease inside the write's
transaction, and touches the lease's fence document there (its generation; a new holding bumps
it), so that a new holding and the write conflict and one of them waits or retries: the check is
atomic with the write. Renewals write only the lease document, which the transactions merely
read, so a run's renewals never wait behind its own commits (with many executors committing at
once they would otherwise starve, and the run lose its lease). Without transactions the
check comes just before the write (and again before CommitClean's deletes): best effort, as a
lease taken over in between is not seen, but a run that lost its lease long ago is refused.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import InsertOne, ReplaceOne, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from db_api.filters import Condition, to_mongo_query
from db_api.store import base
from db_api.store.base import CleanCommit, CommitCounts, Fence, Lease, ScanSpec, Store, Wanted, WriteCounts
from pipeline_lib.contract.collections import COLLECTIONS, LATER_HOMES, RAW, RECEIPTS
from pipeline_lib.contract.fields import RECEIPT_FIELDS
from pipeline_lib.settings import redact_uri_password as redact
from pipeline_lib.wire import bson_codec
from pipeline_lib.wire.errors import DbApiError, DeadlineExceeded, InvalidArgument, StaleFence, Unavailable

SEQ = bson_codec.SEQ_FIELD
_COUNTERS = "_workbench_counters"
_LEASES = "_workbench_leases"
_FENCES = "_workbench_fences"
_DUPLICATE_KEY = 11000
_IN_CHUNK = 10_000
_WRITE_ATTEMPTS = 5
_LEASE_ATTEMPTS = 20

F = TypeVar("F", bound=Callable[..., Any])


def _translate_errors(method: F) -> F:
    """Report an unreachable server as UNAVAILABLE and other server errors with their message."""

    def translate(exc: PyMongoError) -> DbApiError:
        if isinstance(exc, ConnectionFailure):
            return Unavailable(f"MongoDB cannot be reached: {exc}")
        return DbApiError(f"MongoDB refused the operation: {exc}")

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from method(*args, **kwargs)
            except PyMongoError as exc:
                raise translate(exc) from exc

        return generator  # type: ignore[return-value]

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except PyMongoError as exc:
            raise translate(exc) from exc

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _within(deadline: float | None) -> Iterator[None]:
    """The operations inside bounded by the caller's deadline (pymongo's client-side operation
    timeout: each command carries the time left as maxTimeMS, so the server gives up too)."""
    if deadline is None:
        yield
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("not stored: the caller's deadline had passed before the insert began")
    try:
        with pymongo.timeout(left):
            yield
    except PyMongoError as exc:
        if not exc.timeout or isinstance(exc, ServerSelectionTimeoutError):  # no server: unavailable
            raise
        raise DeadlineExceeded(
            "MongoDB did not acknowledge the insert before the caller's deadline (it may still be "
            f"stored): {exc}"
        ) from exc


def _check_encodable(docs: Sequence[dict]) -> None:
    """Refuse the whole write before any of it reaches the server, as the embedded store does."""
    for doc in docs:
        bson_codec.encode(doc)


def _stored_lease(doc: dict | None) -> base.StoredLease | None:
    if doc is None:
        return None
    return base.StoredLease(doc["holder"], doc["expires_at"], doc.get("generation", 0))


def _without_seq(doc: dict) -> dict:
    doc.pop(SEQ, None)
    return doc


def only_duplicate_ids(details: Mapping[str, Any]) -> bool:
    """Whether a BulkWriteError's `details` say only that some ids were there already. A write
    concern error (the inserts not replicated as the URI asks, e.g. `wtimeoutMS` passed) comes in
    the same exception: those inserts may be rolled back, so they must never be acknowledged."""
    errors = details.get("writeErrors") or []
    return (
        bool(errors)
        and not details.get("writeConcernErrors")
        and all(err.get("code") == _DUPLICATE_KEY for err in errors)
    )


class MongoStore(Store):
    def __init__(self, uri: str, *, transactions: bool | None = None, timeout_ms: int = 10_000) -> None:
        """`transactions=None` detects them: replica sets and sharded clusters have them."""
        try:
            self.client: pymongo.MongoClient = pymongo.MongoClient(
                uri,
                serverSelectionTimeoutMS=timeout_ms,
                tz_aware=True,
                tzinfo=bson_codec.DECODE_OPTIONS.tzinfo,
                type_registry=bson_codec.ENCODE_OPTIONS.type_registry,
            )
        except (PyMongoError, ValueError) as exc:  # chained errors would carry the password on
            shown, why = redact(uri, uri), redact(str(exc), uri)
            raise Unavailable(f"the MongoDB URI {shown} is not usable: {why}") from None
        self.db = self.client.get_default_database(default="workbench")
        self._raw_options = CodecOptions(document_class=RawBSONDocument)
        try:
            hello = self.client.admin.command("hello")
            for name in sorted(COLLECTIONS):
                self.db[name].create_index(SEQ)
                # Counters exist before any writer needs one: concurrent upserts of a missing
                # counter race (a server may answer one of them with nothing).
                self.db[_COUNTERS].update_one({"_id": name}, {"$setOnInsert": {"seq": 0}}, upsert=True)
        except PyMongoError as exc:
            self.client.close()
            shown, why = redact(uri, uri), redact(str(exc), uri)
            raise Unavailable(f"MongoDB at {shown} cannot be used: {why}") from None
        if transactions is None:
            transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
        self.transactions = transactions

    # -- helpers -----------------------------------------------------------------------------

    def _allocate_seqs(self, collection: str, n: int) -> int:
        """Reserve n sequence numbers; return the first. Gaps (unused numbers) are harmless."""
        counter = self.db[_COUNTERS].find_one_and_update(
            {"_id": collection}, {"$inc": {"seq": n}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        if counter is None:
            raise DbApiError(f"MongoDB returned no sequence counter for {collection!r}")
        return counter["seq"] - n + 1

    def _write(
        self, collection: str, docs: Sequence[dict], *, upsert: bool, session: ClientSession | None = None
    ) -> WriteCounts:
        if not docs:
            return WriteCounts()
        coll = self.db[collection]
        ids = list({doc["_id"]: None for doc in docs})
        existing: dict[str, int] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            query = {"_id": {"$in": ids[start : start + _IN_CHUNK]}}
            existing.update((d["_id"], d[SEQ]) for d in coll.find(query, {SEQ: 1}, session=session))
        # Stored before and moved on by a step since: as if still here. Raw is read first: a clean
        # writes an id's new home before deleting it from raw, so every id is seen in one of them.
        moved = set() if upsert else set(self._moved(collection, ids, session, whole=False)) - existing.keys()
        first_seq = self._allocate_seqs(collection, len(ids) - len(existing) - len(moved))
        ops: list[InsertOne | ReplaceOne] = []
        inserted = replaced = skipped = 0
        for doc in docs:
            doc_id = doc["_id"]
            if doc_id in moved:
                skipped += 1
            elif doc_id in existing:
                if not upsert:
                    skipped += 1
                    continue
                ops.append(ReplaceOne({"_id": doc_id}, {**doc, SEQ: existing[doc_id]}, upsert=True))
                replaced += 1
            else:
                existing[doc_id] = first_seq
                first_seq += 1
                ops.append(InsertOne({**doc, SEQ: existing[doc_id]}))
                inserted += 1
        if ops:
            coll.bulk_write(ops, ordered=True, session=session)
        return WriteCounts(inserted, replaced, skipped)

    def _moved(
        self, collection: str, ids: Sequence[str], session: ClientSession | None = None, whole: bool = True
    ) -> dict[str, dict]:
        """The documents of `ids` that live on elsewhere (`LATER_HOMES`; the first home found), by
        id; with `whole` False only their ids."""
        found: dict[str, dict] = {}
        if not ids:
            return found
        projection = None if whole else {"_id": 1}
        for home in LATER_HOMES.get(collection, ()):
            for start in range(0, len(ids), _IN_CHUNK):
                query = {"_id": {"$in": list(ids[start : start + _IN_CHUNK])}}
                for d in self.db[home].find(query, projection, session=session):
                    found.setdefault(d["_id"], _without_seq(d))
        return found

    def _undo_moved(
        self, collection: str, inserted: Mapping[str, int], session: ClientSession | None = None
    ) -> dict[str, dict]:
        """Documents just inserted (id -> seq) whose id a clean moved on meanwhile (it deleted the
        raw copy it had read just before this insert, so the moved one is visible now): our
        copies are deleted again and the moved documents returned, by id."""
        moved = self._moved(collection, list(inserted), session)
        for doc_id in moved:
            self.db[collection].delete_one({"_id": doc_id, SEQ: inserted[doc_id]}, session=session)
        return moved

    def _keep_receipts(self, ids: Sequence[str], session: ClientSession | None = None) -> None:
        """Receipts of the raw records `ids` (merged into other records), before they go."""
        fields = dict.fromkeys(RECEIPT_FIELDS, 1)
        receipts = [
            base.receipt(d)
            for start in range(0, len(ids), _IN_CHUNK)
            for d in self.db[RAW].find(
                {"_id": {"$in": list(ids[start : start + _IN_CHUNK])}}, fields, session=session
            )
        ]
        if not receipts:
            return
        if session is not None:  # in the commit's transaction
            self._write(RECEIPTS, receipts, upsert=True, session=session)
        else:
            self._write_retrying(RECEIPTS, receipts, upsert=True)

    def _write_retrying(self, collection: str, docs: Sequence[dict], *, upsert: bool) -> WriteCounts:
        """A concurrent writer may insert one of our new ids between lookup and write: redo."""
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return self._write(collection, docs, upsert=upsert)
            except BulkWriteError as exc:
                if not only_duplicate_ids(exc.details) or attempt == _WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _check_fence(self, fence: Fence | None, session: ClientSession | None = None) -> None:
        """Refuse a stale fence. In a transaction (`session`), the fence document is also written,
        so a concurrent new holding (which bumps it) conflicts with this transaction instead of
        slipping past it."""
        if fence is None:
            return
        base.check_fence(
            fence, _stored_lease(self.db[_LEASES].find_one({"_id": fence.lease}, session=session))
        )
        if session is None:
            return
        try:
            # Created, or brought up to this generation, if a holder died before bumping it.
            self.db[_FENCES].update_one(
                {"_id": fence.lease, "generation": {"$lte": fence.generation}},
                {"$set": {"generation": fence.generation, "fenced_at": fence.now}},
                upsert=True,
                session=session,
            )
        except DuplicateKeyError:  # a newer generation's fence: taken over meanwhile
            base.check_fence(fence, _stored_lease(self.db[_LEASES].find_one({"_id": fence.lease})))
            raise StaleFence(
                f"lease {fence.lease} was taken over; this run's generation {fence.generation} is stale"
            ) from None

    def _bump_fence(self, name: str, generation: int) -> None:
        """A new holding's generation on the fence document: a transaction of an older one still
        open conflicts with this, and none can commit after."""
        with contextlib.suppress(DuplicateKeyError):  # already this generation or newer
            self.db[_FENCES].update_one(
                {"_id": name, "generation": {"$lt": generation}},
                {"$set": {"generation": generation}},
                upsert=True,
            )

    def _delete_ids(self, collection: str, ids: Sequence[str], session: ClientSession | None = None) -> int:
        deleted = 0
        for start in range(0, len(ids), _IN_CHUNK):
            query = {"_id": {"$in": list(ids[start : start + _IN_CHUNK])}}
            deleted += self.db[collection].delete_many(query, session=session).deleted_count
        return deleted

    # -- documents -------------------------------------------------------------------------

    @_translate_errors
    def insert_one(self, collection: str, doc: dict, deadline: float | None = None) -> tuple[dict, bool]:
        _check_encodable([doc])
        with _within(deadline):
            for _ in range(_WRITE_ATTEMPTS):
                if moved := self._moved(collection, [doc["_id"]]):
                    return moved[doc["_id"]], False
                stored = {**doc, SEQ: self._allocate_seqs(collection, 1)}
                try:
                    self.db[collection].insert_one(stored)
                except DuplicateKeyError:
                    found = self.db[collection].find_one({"_id": doc["_id"]})
                    if found is None:  # moved on by a clean since the insert was refused: look again
                        continue
                    return _without_seq(found), False
                if moved := self._undo_moved(collection, {doc["_id"]: stored[SEQ]}):
                    return moved[doc["_id"]], False
                return bson_codec.decode(bson_codec.encode(_without_seq(stored))), True
        raise DbApiError(f"inserting {doc['_id']!r} into {collection!r} kept racing with a clean; try again")

    @_translate_errors
    def insert_each(
        self, collection: str, docs: Sequence[dict], deadline: float | None = None
    ) -> list[tuple[dict, bool] | InvalidArgument]:
        """One unordered `insert_many` for the documents that can be stored; those whose id exists
        get the stored document, read back in one query."""
        with _within(deadline):
            return self._insert_each(collection, docs, deadline)

    def _insert_each(
        self, collection: str, docs: Sequence[dict], deadline: float | None
    ) -> list[tuple[dict, bool] | InvalidArgument]:
        outcomes: list[tuple[dict, bool] | InvalidArgument | None] = [None] * len(docs)
        valid: list[int] = []
        for i, doc in enumerate(docs):
            try:
                bson_codec.encode(doc)
                valid.append(i)
            except InvalidArgument as exc:
                outcomes[i] = exc
        moved = self._moved(collection, [docs[i]["_id"] for i in valid])
        for i in valid:
            if docs[i]["_id"] in moved:
                outcomes[i] = (moved[docs[i]["_id"]], False)
        valid = [i for i in valid if outcomes[i] is None]
        if valid:
            first_seq = self._allocate_seqs(collection, len(valid))
            stored = [{**docs[i], SEQ: first_seq + n} for n, i in enumerate(valid)]
            existing: set[int] = set()
            try:
                self.db[collection].insert_many(stored, ordered=False)
            except BulkWriteError as exc:
                if not only_duplicate_ids(exc.details):
                    raise
                existing = {valid[err["index"]] for err in exc.details["writeErrors"]}
            found = (
                {
                    doc["_id"]: _without_seq(doc)
                    for doc in self.db[collection].find({"_id": {"$in": [docs[i]["_id"] for i in existing]}})
                }
                if existing
                else {}
            )
            new = {docs[i]["_id"]: stored[n][SEQ] for n, i in enumerate(valid) if i not in existing}
            undone = self._undo_moved(collection, new) if new else {}
            for i in valid:
                if docs[i]["_id"] in undone:
                    outcomes[i] = (undone[docs[i]["_id"]], False)
                elif i not in existing:
                    outcomes[i] = (bson_codec.decode(bson_codec.encode(docs[i])), True)
                elif docs[i]["_id"] in found:
                    outcomes[i] = (found[docs[i]["_id"]], False)
                else:  # deleted (a clean committed it) since: as insert_one would, now
                    outcomes[i] = self.insert_one(collection, docs[i], deadline)
        return [outcome for outcome in outcomes if outcome is not None]

    @_translate_errors
    def get(self, collection: str, doc_id: str) -> dict | None:
        return self.db[collection].find_one({"_id": doc_id}, {SEQ: 0})

    @_translate_errors
    def count(
        self, collection: str, conditions: Sequence[Condition] = (), wanted: Wanted | None = None
    ) -> int:
        # MongoDB counts on its side, in one command `wanted` cannot interrupt.
        return self.db[collection].count_documents(to_mongo_query(conditions))

    @_translate_errors
    def high_water_mark(self, collection: str) -> int:
        counter = self.db[_COUNTERS].find_one({"_id": collection})
        return counter["seq"] if counter else 0

    @_translate_errors
    def delete_ids(self, collection: str, ids: Sequence[str]) -> int:
        return self._delete_ids(collection, ids)

    @_translate_errors
    def write(
        self, collection: str, docs: Sequence[dict], *, upsert: bool, fence: Fence | None = None
    ) -> WriteCounts:
        _check_encodable(docs)
        if not self.transactions:
            self._check_fence(fence)  # best effort: see the module's docstring
            # Applied in order; on failure the part already written is repeated harmlessly.
            return self._write_retrying(collection, docs, upsert=upsert)

        def in_transaction(session: ClientSession) -> WriteCounts:
            self._check_fence(fence, session)
            return self._write(collection, docs, upsert=upsert, session=session)

        with self.client.start_session() as session:
            return session.with_transaction(in_transaction)

    @_translate_errors
    def scan_pages(self, collection: str, spec: ScanSpec) -> Iterator[list[bytes]]:
        query = to_mongo_query(spec.conditions)
        if spec.partitions > 1:
            query = {"$and": [query, {SEQ: {"$mod": [spec.partitions, spec.partition]}}]}
        # Inclusion projections leave the sequence field out too. Filtered fields stay in, as
        # callers filter the pages again.
        if spec.columns:
            projection = {c: 1 for c in [*spec.columns, *(cond.field for cond in spec.conditions)]}
        else:
            projection = {SEQ: 0}
        cursor = (
            self.db.get_collection(collection, codec_options=self._raw_options)
            .find(query, projection)
            .sort(SEQ, -1 if spec.newest_first else 1)
            .batch_size(spec.page_size)
            .limit(spec.limit)
        )
        page: list[bytes] = []
        for raw in cursor:
            page.append(raw.raw)
            if len(page) == spec.page_size:
                yield page
                page = []
        if page:
            yield page

    @_translate_errors
    def _commit_clean(self, commit: CleanCommit) -> CommitCounts:
        cleaned, quarantine, fence = commit.cleaned, commit.quarantine, commit.fence
        _check_encodable([*cleaned, *quarantine])
        if self.transactions:

            def in_transaction(session: ClientSession) -> int:
                self._check_fence(fence, session)
                self._write("cleaned", cleaned, upsert=True, session=session)
                self._write("quarantine", quarantine, upsert=True, session=session)
                self._delete_ids("quarantine", commit.cleaned_ids, session=session)
                self._delete_ids("cleaned", commit.quarantine_ids, session=session)
                self._keep_receipts(commit.merged_ids, session)
                return self._delete_ids("raw", commit.raw_ids, session=session)

            with self.client.start_session() as session:
                deleted = session.with_transaction(in_transaction)
        else:
            # Without transactions: upserts first, the delete last. A crash in between leaves
            # raw records that the next run cleans again into the same keys: nothing lost or doubled.
            # The fence is checked first and again before the deletes (best effort, see above).
            self._check_fence(fence)
            self._write_retrying("cleaned", cleaned, upsert=True)
            self._write_retrying("quarantine", quarantine, upsert=True)
            self._check_fence(fence)
            self._delete_ids("quarantine", commit.cleaned_ids)
            self._delete_ids("cleaned", commit.quarantine_ids)
            self._keep_receipts(commit.merged_ids)  # before the raw records go: safe to repeat
            deleted = self._delete_ids("raw", commit.raw_ids)
        return CommitCounts(len(cleaned), len(quarantine), deleted, transactional=self.transactions)

    # -- leases ----------------------------------------------------------------------------

    @_translate_errors
    def acquire_lease(self, name: str, holder: str, ttl_seconds: float, now: float) -> Lease:
        """Compare-and-set on the lease document as read, so that concurrent acquirers agree on
        one holder and on the generation (no update pipelines: not every server has them)."""
        leases = self.db[_LEASES]
        for _ in range(_LEASE_ATTEMPTS):
            current = leases.find_one({"_id": name})
            lease = base.take_lease(_stored_lease(current), holder, ttl_seconds, now)
            if not lease.acquired:
                return lease
            holding = {"holder": holder, "expires_at": lease.expires_at, "generation": lease.generation}
            if current is None:
                try:
                    leases.insert_one({"_id": name, **holding})
                except DuplicateKeyError:
                    continue  # another acquirer created it first: judge its holding
                self._bump_fence(name, lease.generation)
                return lease
            as_read = {
                "_id": name,
                "holder": current["holder"],
                "expires_at": current["expires_at"],
                "generation": current.get("generation"),  # None also matches a missing field
            }
            if leases.update_one(as_read, {"$set": holding}).matched_count == 1:
                if lease.generation != current.get("generation"):
                    self._bump_fence(name, lease.generation)
                return lease
        raise DbApiError(f"lease {name} changed under {_LEASE_ATTEMPTS} attempts to acquire it in a row")

    @_translate_errors
    def release_lease(self, name: str, holder: str) -> bool:
        released = self.db[_LEASES].update_one(
            {"_id": name, "holder": holder, "expires_at": {"$gt": base.RELEASED}},
            {"$set": {"expires_at": base.RELEASED}},
        )
        return released.matched_count == 1

    def ping(self) -> None:
        try:
            self.client.admin.command("ping")
        except PyMongoError as exc:
            raise Unavailable(f"MongoDB cannot be reached: {exc}") from exc

    def close(self) -> None:
        self.client.close()
