"""The store interface: what the db-api needs from a database, whatever the backend.

The servicer only ever talks to a `Store`; the SQLite and MongoDB backends implement it and pass
the same contract tests. Every write is keyed by `_id` and idempotent, so any call can be
repeated after a crash or a lost reply.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from db_api.filters import Condition
from db_api.scan_pages import decode_matching
from db_api.store.encoded import ids_of, values_of
from pipeline_lib.contract.fields import RECEIPT_FIELDS
from pipeline_lib.wire.bson_codec import check_id
from pipeline_lib.wire.errors import InvalidArgument, StaleFence

T = TypeVar("T")
Wanted = Callable[[], bool]  # whether a read's caller still wants its answer


class CallEnded(Exception):
    """The caller of a read went away (cancelled it, or its deadline passed): stop reading for it."""


def while_wanted(pages: Iterable[T], wanted: Wanted | None) -> Iterator[T]:
    """`pages`, asking `wanted()` before reading each: a read nobody waits for any more ends
    (`CallEnded`) within a page, even one that has found nothing to answer with yet."""
    iterator = iter(pages)
    try:
        while True:
            if wanted is not None and not wanted():
                raise CallEnded("the caller went away")
            try:
                page = next(iterator)
            except StopIteration:
                return
            yield page
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class WriteCounts:
    inserted: int = 0
    replaced: int = 0
    skipped: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(
            self.inserted + other.inserted, self.replaced + other.replaced, self.skipped + other.skipped
        )


@dataclass(frozen=True)
class CommitCounts:
    cleaned: int
    quarantined: int
    raw_deleted: int
    transactional: bool


@dataclass(frozen=True)
class Lease:
    """`generation` grows each time the lease is taken anew (by another holder, or after it was
    released); a renewal keeps it, even one that comes after the holding expired if nobody took
    the lease meanwhile. A refused acquisition reports the current one."""

    acquired: bool
    holder: str
    expires_at: float
    generation: int


@dataclass(frozen=True)
class Fence:
    """A write's claim to hold lease `lease` in `generation`, judged at `now` (unix seconds)."""

    lease: str
    generation: int
    now: float


class StoredLease(NamedTuple):
    """A lease as a backend keeps it (a store made before generations has 0)."""

    holder: str
    expires_at: float
    generation: int


# A released lease keeps its row (and so its generation) with this expiry.
RELEASED = 0.0


def take_lease(stored: StoredLease | None, holder: str, ttl_seconds: float, now: float) -> Lease:
    """What `holder` asking at `now` for a lease kept as `stored` (None: never taken) gets: a refusal
    while another holds it, a renewal in the same generation for its holder, else the next one.

    A late renewal (the holder's lease expired, say while the db-api was slow, and nobody took it)
    keeps the generation: any other holding would have replaced `stored.holder`, so no write with
    a newer fence can exist, and the run need not be stopped. Its writes made while expired were
    refused all the same (`check_fence`)."""
    if stored is None:
        return Lease(True, holder, now + ttl_seconds, 1)
    held = stored.expires_at > now
    if held and stored.holder != holder:
        return Lease(False, stored.holder, stored.expires_at, stored.generation)
    renewal = stored.holder == holder and stored.expires_at > RELEASED
    return Lease(True, holder, now + ttl_seconds, stored.generation if renewal else stored.generation + 1)


def check_fence(fence: Fence, stored: StoredLease | None) -> None:
    """Refuse the write unless the lease kept as `stored` (None: no such lease) is held in the
    fence's generation."""
    lease, mine = fence.lease, fence.generation
    if stored is None:
        raise StaleFence(f"lease {lease} is not held by anyone; this run's generation {mine} is stale")
    holder, expires_at, generation = stored
    if generation != mine:
        held = "is now held" if expires_at > fence.now else "was last held"
        raise StaleFence(
            f"lease {lease} {held} by {holder} (generation {generation}); "
            f"this run's generation {mine} is stale"
        )
    if expires_at <= RELEASED:
        raise StaleFence(
            f"lease {lease} was released (generation {mine}, holder {holder}); this run no longer holds it"
        )
    if expires_at <= fence.now:
        raise StaleFence(
            f"lease {lease} expired {fence.now - expires_at:.1f} s ago (generation {mine}, holder {holder}); "
            "this run no longer holds it"
        )


def receipt(doc: dict) -> dict:
    """What the store keeps of a raw record the clean merged into another one: its id and receipt
    fields, so that the id is still known as received (`RECEIPTS`, `LATER_HOMES`)."""
    return {"_id": doc["_id"], **{name: doc[name] for name in RECEIPT_FIELDS if name in doc}}


@dataclass(frozen=True)
class CleanCommit:
    """One clean step's verdicts, committed as one unit: cleaned and quarantine documents are
    upserted, the raw ids they came from deleted. A record judged again lives in one place only,
    where this commit puts it, so it leaves the other collection; it cannot go to both."""

    cleaned: Sequence[dict]
    quarantine: Sequence[dict]
    raw_ids: Sequence[str]
    fence: Fence | None = None

    def __post_init__(self) -> None:
        both = set(self.cleaned_ids) & set(self.quarantine_ids)
        if both:
            raise InvalidArgument(f"records cannot be both cleaned and quarantined: {sorted(both)[:5]}")
        # Checked before anything is written: a store without transactions writes in steps.
        for doc_id, duplicates in zip(self.cleaned_ids, values_of(self.cleaned, "duplicates"), strict=True):
            if duplicates is None:
                continue
            if not isinstance(duplicates, list):
                raise InvalidArgument(
                    f"cleaned record {doc_id!r}: duplicates must be a list of the raw ids merged "
                    f"into it, got {type(duplicates).__name__}"
                )
            for value in duplicates:
                check_id(value, f"cleaned record {doc_id!r}: each of its duplicates")

    @property
    def cleaned_ids(self) -> list[str]:
        return ids_of(self.cleaned)

    @property
    def quarantine_ids(self) -> list[str]:
        return ids_of(self.quarantine)

    @property
    def merged_ids(self) -> list[str]:
        """Raw ids this commit deletes that a cleaned record names as resubmissions merged into it
        (its `duplicates`) and that have no record of their own: their receipts are kept
        (`receipt`). Of other deleted ids (records without consent) nothing is kept."""
        merged = {i for duplicates in values_of(self.cleaned, "duplicates") for i in duplicates or ()}
        placed = {*self.cleaned_ids, *self.quarantine_ids}
        return [i for i in dict.fromkeys(self.raw_ids) if i in merged and i not in placed]


@dataclass(frozen=True)
class ScanSpec:
    """What to read: an AND filter, a projection, one partition of n, in sequence order."""

    conditions: Sequence[Condition] = ()
    columns: Sequence[str] = ()
    partition: int = 0
    partitions: int = 1
    page_size: int = 1000
    limit: int = 0
    newest_first: bool = False


class Store(abc.ABC):
    """Documents are dicts with a string `_id`, already validated by the caller."""

    @abc.abstractmethod
    def insert_one(self, collection: str, doc: dict, deadline: float | None = None) -> tuple[dict, bool]:
        """Insert if absent. Return the stored document and whether it was inserted now.

        `deadline` (a `time.monotonic()` instant: the caller's) bounds the wait: an insert not
        committed by then raises DeadlineExceeded, and the store does not commit it later (the
        embedded store exactly; a MongoDB server aborts the operation at its maxTimeMS)."""

    def insert_each(
        self, collection: str, docs: Sequence[dict], deadline: float | None = None
    ) -> list[tuple[dict, bool] | InvalidArgument]:
        """`insert_one` for each document, in order; a document refused on its own (InvalidArgument)
        gets its error in its place and the others go on. Any other error fails the whole call,
        possibly after some documents were committed (each insert is idempotent on its `_id`)."""
        outcomes: list[tuple[dict, bool] | InvalidArgument] = []
        for doc in docs:
            try:
                outcomes.append(self.insert_one(collection, doc, deadline))
            except InvalidArgument as exc:
                outcomes.append(exc)
        return outcomes

    @abc.abstractmethod
    def get(self, collection: str, doc_id: str) -> dict | None: ...

    @abc.abstractmethod
    def count(
        self, collection: str, conditions: Sequence[Condition] = (), wanted: Wanted | None = None
    ) -> int:
        """The documents matching `conditions`; a backend that reads them stops once not `wanted`."""

    @abc.abstractmethod
    def high_water_mark(self, collection: str) -> int:
        """The highest sequence number ever assigned in the collection; 0 if none."""

    @abc.abstractmethod
    def delete_ids(self, collection: str, ids: Sequence[str]) -> int: ...

    @abc.abstractmethod
    def write(
        self, collection: str, docs: Sequence[dict], *, upsert: bool, fence: Fence | None = None
    ) -> WriteCounts:
        """Atomically insert-if-absent (upsert=False) or insert-or-replace (upsert=True).

        With a `fence`, raise `StaleFence` and write nothing unless it still holds (see
        `check_fence`), checked atomically with the write where the backend can."""

    @abc.abstractmethod
    def scan_pages(self, collection: str, spec: ScanSpec) -> Iterator[list[bytes]]:
        """Yield pages of stored BSON documents in sequence order (newest first if asked).

        Partition i of n holds the documents whose sequence number is i modulo n, so n readers
        cover a collection exactly once, even while it is being written to. A backend may also
        apply the filter, projection and limit (MongoDB does, to move less data); callers apply
        the filter and limit again, so a backend that leaves them out is just as correct.
        """

    def scan(self, collection: str, spec: ScanSpec, wanted: Wanted | None = None) -> Iterator[list[dict]]:
        """Yield pages of the matching documents, decoded, at most `spec.limit` in all, while `wanted`."""
        remaining = spec.limit or None
        for blobs in while_wanted(self.scan_pages(collection, spec), wanted):
            page = decode_matching(blobs, spec.conditions)
            if remaining is not None:
                page = page[:remaining]
                remaining -= len(page)
            if page:
                yield page
            if remaining == 0:
                return

    def commit_clean(
        self,
        cleaned: Sequence[dict],
        quarantine: Sequence[dict],
        raw_ids: Sequence[str],
        *,
        fence: Fence | None = None,
    ) -> CommitCounts:
        """Upsert cleaned and quarantine documents and delete raw_ids from raw, as one unit (see
        `CleanCommit`); a `fence` as for `write`."""
        return self._commit_clean(CleanCommit(cleaned, quarantine, raw_ids, fence))

    @abc.abstractmethod
    def _commit_clean(self, commit: CleanCommit) -> CommitCounts: ...

    @abc.abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl_seconds: float, now: float) -> Lease: ...

    @abc.abstractmethod
    def release_lease(self, name: str, holder: str) -> bool:
        """End the holder's lease at once (its row stays, expired, so generations keep growing)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise `Unavailable` if the database cannot be reached."""

    @abc.abstractmethod
    def close(self) -> None: ...
