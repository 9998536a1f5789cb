"""The embedded store: SQLite in WAL mode, one table per collection, documents as BSON blobs.

Each table has the document id as a unique key and an AUTOINCREMENT `seq` that orders documents,
defines partitions (seq modulo n) and gives a high-water mark. `synchronous=FULL` makes every
acknowledged commit durable, even against power loss, not only against a killed process.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from db_api.filters import Condition
from db_api.store import base
from db_api.store.base import CleanCommit, CommitCounts, Fence, Lease, ScanSpec, Store, Wanted, WriteCounts
from db_api.store.encoded import EncodedDocuments
from pipeline_lib.contract.collections import COLLECTIONS, LATER_HOMES, RAW, RECEIPTS
from pipeline_lib.wire import bson_codec
from pipeline_lib.wire.errors import DeadlineExceeded, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

# SQLite allows 32766 parameters per statement; stay well below for IN lists.
_IN_CHUNK = 900
_MAX_SEQ = 2**63 - 1
# The one connection that writes keeps up to this many KiB of pages cached between transactions
# (SQLite's default is 2 MiB): a clean's commits upsert and delete by id all over the id index.
_WRITER_CACHE_KIB = 131_072
# It folds the write-ahead log into the database once the log holds this many pages (SQLite's
# default is 1,000, which a commit of 10,000 records passes every time): a page changed by several
# commits in between is written back once.
_WRITER_CHECKPOINT_PAGES = 10_000


def _table(collection: str) -> str:
    return f'"c_{collection}"'


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writer: sqlite3.Connection | None = None  # used under the write lock only
        self._writer_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # SQLite has one writer at a time; queueing writers here is fairer than its busy loop.
        self._write_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_PendingInsert] = []
        self._guard = _UseGuard()
        with self._guard.use():
            self._conn().execute("PRAGMA journal_mode=WAL")
        with self._transaction() as tx:
            for name in sorted(COLLECTIONS):
                tx.execute(
                    f"CREATE TABLE IF NOT EXISTS {_table(name)} ("
                    "seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc BLOB NOT NULL)"
                )
            tx.execute(
                "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
                "expires_at REAL NOT NULL, generation INTEGER NOT NULL DEFAULT 0)"
            )
            if "generation" not in {row[1] for row in tx.execute("PRAGMA table_info(leases)")}:
                # A store made before leases had generations.
                tx.execute("ALTER TABLE leases ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")

    # -- connections and transactions -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, for reading."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _writing_conn(self) -> sqlite3.Connection:
        """The connection every write transaction uses, one at a time under the write lock, so
        the pages one commit read stay cached for the next, whichever thread runs it."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = self._connect(writer=True)
            return self._writer

    def _connect(self, writer: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open the embedded store at {self.path}: {exc}") from exc
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=60000")
        if writer:
            conn.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint={_WRITER_CHECKPOINT_PAGES}")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, lock: threading.Lock | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction under the store's write lock (or `lock`, None when the caller holds it)."""
        with self._guard.use(), _Transaction(self._writing_conn(), lock or self._write_lock) as tx:
            yield tx

    def _reading(self) -> AbstractContextManager[None]:
        return self._guard.use()

    # -- documents -------------------------------------------------------------------------

    def insert_one(self, collection: str, doc: dict, deadline: float | None = None) -> tuple[dict, bool]:
        """Group commit: concurrent inserts share one transaction and one fsync. Each caller
        returns only once the transaction holding its document is durable."""
        (outcome,) = self.insert_each(collection, [doc], deadline)
        if isinstance(outcome, InvalidArgument):
            raise outcome
        return outcome

    def insert_each(
        self, collection: str, docs: Sequence[dict], deadline: float | None = None
    ) -> list[tuple[dict, bool] | InvalidArgument]:
        """As `insert_one` for each document, all in the next group commit (one transaction and one
        fsync shared with every insert waiting then); returns once that commit is durable.

        Past `deadline` the documents are withdrawn while they wait, or left out of the commit that
        took them if its transaction began after it: a caller that gave up (and may resend under a
        new id) never has them stored behind its back. Only a commit already under way at the
        deadline can still store them."""
        outcomes: list[_PendingInsert | InvalidArgument] = []
        for doc in docs:
            try:
                outcomes.append(_PendingInsert(collection, doc, bson_codec.encode(doc), deadline))
            except InvalidArgument as exc:
                outcomes.append(exc)
        pending = [p for p in outcomes if isinstance(p, _PendingInsert)]
        if pending:  # appended together, so they are committed together, in one batch
            with self._pending_lock:
                self._pending.extend(pending)
            if not self._write_lock.acquire(timeout=_seconds_left(deadline)):
                if self._withdraw(pending):
                    raise _too_late(len(pending))
                self._write_lock.acquire()  # a commit under way took them: its outcome is theirs
            try:
                if pending[-1].result is None and pending[-1].error is None:
                    self._commit_pending()
            finally:
                self._write_lock.release()
            if pending[-1].error is not None:
                raise pending[-1].error
        return [o if isinstance(o, InvalidArgument) else o.finished() for o in outcomes]

    def _withdraw(self, pending: list[_PendingInsert]) -> bool:
        """Take `pending` (queued together) out of the queue; False if a commit has taken them."""
        with self._pending_lock:
            if not any(p is pending[0] for p in self._pending):
                return False
            mine = {id(p) for p in pending}
            self._pending = [p for p in self._pending if id(p) not in mine]
            return True

    def _commit_pending(self) -> None:
        """Runs under the write lock: commit every insert waiting now, in arrival order, but those
        whose caller's deadline passed before the transaction began."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        try:
            with self._guard.use(), _Transaction(self._writing_conn(), None) as tx:
                now = time.monotonic()
                late = [p for p in batch if p.deadline is not None and p.deadline <= now]
                for p in late:
                    p.error = _too_late(1)
                batch = [p for p in batch if p.error is None]
                found = [_insert_if_absent(tx, p.collection, p.doc["_id"], p.blob) for p in batch]
        except BaseException as exc:
            for p in batch:
                p.error = exc
            raise
        for p, (blob, inserted) in zip(batch, found, strict=True):
            p.result = (p.doc, True) if inserted else (bson_codec.decode(blob), False)

    def get(self, collection: str, doc_id: str) -> dict | None:
        with self._reading():
            sql = f"SELECT doc FROM {_table(collection)} WHERE id = ?"
            row = self._conn().execute(sql, (doc_id,)).fetchone()
        return bson_codec.decode(row[0]) if row else None

    def count(
        self, collection: str, conditions: Sequence[Condition] = (), wanted: Wanted | None = None
    ) -> int:
        if not conditions:
            with self._reading():
                return self._conn().execute(f"SELECT count(*) FROM {_table(collection)}").fetchone()[0]
        spec = ScanSpec(conditions=conditions, page_size=5000)
        return sum(len(page) for page in self.scan(collection, spec, wanted))

    def high_water_mark(self, collection: str) -> int:
        with self._reading():
            row = (
                self._conn()
                .execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (f"c_{collection}",))
                .fetchone()
            )
        return row[0] if row else 0

    def delete_ids(self, collection: str, ids: Sequence[str]) -> int:
        with self._transaction() as tx:
            return _delete_ids(tx, collection, ids)

    def write(
        self, collection: str, docs: Sequence[dict], *, upsert: bool, fence: Fence | None = None
    ) -> WriteCounts:
        rows = _rows(docs)
        with self._transaction() as tx:
            _check_fence(tx, fence)
            return _write_rows(tx, collection, rows, upsert=upsert)

    def scan_pages(self, collection: str, spec: ScanSpec) -> Iterator[list[bytes]]:
        order, compare, last = ("DESC", "<", _MAX_SEQ) if spec.newest_first else ("ASC", ">", 0)
        where = f"seq {compare} ?"
        params: tuple = ()
        if spec.partitions > 1:
            where += " AND seq % ? = ?"
            params = (spec.partitions, spec.partition)
        sql = f"SELECT seq, doc FROM {_table(collection)} WHERE {where} ORDER BY seq {order} LIMIT ?"
        # Keyset pages, each its own short read: no transaction stays open during a long scan, and
        # close() never waits on a consumer that stopped reading.
        while True:
            with self._reading():
                rows = self._conn().execute(sql, (last, *params, spec.page_size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [row[1] for row in rows]
            if len(rows) < spec.page_size:
                return

    def _commit_clean(self, commit: CleanCommit) -> CommitCounts:
        cleaned_rows = _rows(commit.cleaned)
        quarantine_rows = _rows(commit.quarantine)
        with self._transaction() as tx:
            _check_fence(tx, commit.fence)  # in the same transaction: no new holding can come in between
            _write_rows(tx, "cleaned", cleaned_rows, upsert=True)
            _write_rows(tx, "quarantine", quarantine_rows, upsert=True)
            _delete_ids(tx, "quarantine", commit.cleaned_ids)
            _delete_ids(tx, "cleaned", commit.quarantine_ids)
            _keep_receipts(tx, commit.merged_ids)
            deleted = _delete_ids(tx, "raw", commit.raw_ids)
        return CommitCounts(len(cleaned_rows), len(quarantine_rows), deleted, transactional=True)

    # -- leases ----------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float, now: float) -> Lease:
        with self._transaction() as tx:
            lease = base.take_lease(_stored_lease(tx, name), holder, ttl_seconds, now)
            if lease.acquired:
                tx.execute(
                    "INSERT INTO leases(name, holder, expires_at, generation) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
                    "expires_at = excluded.expires_at, generation = excluded.generation",
                    (name, holder, lease.expires_at, lease.generation),
                )
        return lease

    def release_lease(self, name: str, holder: str) -> bool:
        with self._transaction() as tx:
            cur = tx.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND expires_at > ?",
                (base.RELEASED, name, holder, base.RELEASED),
            )
            return cur.rowcount == 1

    def ping(self) -> None:
        try:
            with self._reading():
                self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise Unavailable(f"the embedded store at {self.path} does not answer: {exc}") from exc

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new calls, wait for running ones, then close every thread's connection."""
        if not self._guard.close(timeout):
            # Closing a connection under a running statement crashes the process: leave them
            # to the process's exit instead.
            log.warning("calls still running after %s s; leaving %s open until exit", timeout, self.path)
            return
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._writer = None


class _UseGuard:
    """Counts calls using a connection. Python's sqlite3 crashes the process when another thread
    closes a connection under a running statement, so close() waits for the count to drop."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._active = 0
        self._closed = False

    @contextmanager
    def use(self) -> Iterator[None]:
        with self._changed:
            if self._closed:
                raise Unavailable("the embedded store is closed (the db-api is shutting down)")
            self._active += 1
        try:
            yield
        finally:
            with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def close(self, timeout: float) -> bool:
        """Refuse new uses; True once no call uses a connection, False after `timeout` seconds."""
        with self._changed:
            self._closed = True
            return self._changed.wait_for(lambda: self._active == 0, timeout)


def _seconds_left(deadline: float | None) -> float:
    """For `Lock.acquire(timeout=)`: -1 waits without end."""
    return -1 if deadline is None else max(0.0, deadline - time.monotonic())


def _too_late(count: int) -> DeadlineExceeded:
    what = "the document was" if count == 1 else f"the {count} documents were"
    return DeadlineExceeded(
        f"{what} not stored: the caller's deadline passed while waiting for the store's write lock"
    )


@dataclass
class _PendingInsert:
    collection: str
    doc: dict
    blob: bytes
    deadline: float | None = None
    result: tuple[dict, bool] | None = None
    error: BaseException | None = None

    def finished(self) -> tuple[dict, bool]:
        assert self.result is not None, "read only after its group commit"
        return self.result


def _insert_if_absent(
    conn: sqlite3.Connection, collection: str, doc_id: str, blob: bytes
) -> tuple[bytes, bool]:
    """The stored BSON (where the id lives on, if a step moved it: `LATER_HOMES`) and whether it
    was inserted now."""
    for table in _later_tables(collection):
        row = conn.execute(f"SELECT doc FROM {table} WHERE id = ?", (doc_id,)).fetchone()
        if row is not None:
            return row[0], False
    cur = conn.execute(f"INSERT OR IGNORE INTO {_table(collection)}(id, doc) VALUES (?, ?)", (doc_id, blob))
    if cur.rowcount == 1:
        return blob, True
    return conn.execute(f"SELECT doc FROM {_table(collection)} WHERE id = ?", (doc_id,)).fetchone()[0], False


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's write lock (None: the caller holds it);
    ROLLBACK on any error."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock | None) -> None:
        self.conn = conn
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
        finally:
            try:
                # Also after a failed COMMIT: an open transaction would block every later writer.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            finally:
                if self.lock is not None:
                    self.lock.release()


def _stored_lease(conn: sqlite3.Connection, name: str) -> base.StoredLease | None:
    row = conn.execute("SELECT holder, expires_at, generation FROM leases WHERE name = ?", (name,)).fetchone()
    return base.StoredLease(*row) if row else None


def _check_fence(conn: sqlite3.Connection, fence: Fence | None) -> None:
    if fence is not None:
        base.check_fence(fence, _stored_lease(conn, fence.lease))


def _rows(docs: Sequence[dict]) -> list[tuple[str, bytes]]:
    if isinstance(docs, EncodedDocuments):
        return docs.rows()  # encoded with the request, from its Arrow columns
    return [(doc["_id"], bson_codec.encode(doc)) for doc in docs]


def _existing_ids(conn: sqlite3.Connection, collection: str, ids: Sequence[str]) -> set[str]:
    return _ids_in(conn, _table(collection), ids)


def _ids_in(conn: sqlite3.Connection, table: str, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(row[0] for row in conn.execute(f"SELECT id FROM {table} WHERE id IN ({marks})", chunk))
    return found


def _later_tables(collection: str) -> list[str]:
    """Where an id inserted into `collection` may live on, first home first (`LATER_HOMES`)."""
    return [_table(home) for home in LATER_HOMES.get(collection, ())]


def _keep_receipts(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = list(ids[start : start + _IN_CHUNK])
        marks = ",".join("?" * len(chunk))
        raw = conn.execute(f"SELECT doc FROM {_table(RAW)} WHERE id IN ({marks})", chunk).fetchall()
        receipts = [base.receipt(bson_codec.decode(row[0])) for row in raw]
        _write_rows(conn, RECEIPTS, [(r["_id"], bson_codec.encode(r)) for r in receipts], upsert=True)


def _write_rows(
    conn: sqlite3.Connection, collection: str, rows: list[tuple[str, bytes]], *, upsert: bool
) -> WriteCounts:
    table = _table(collection)
    if not upsert:
        ids = [row[0] for row in rows]
        moved = set().union(*(_ids_in(conn, table, ids) for table in _later_tables(collection)))
        kept = [row for row in rows if row[0] not in moved]  # moved on since: as if still here
        if not kept:
            return WriteCounts(skipped=len(rows))
        cur = conn.executemany(f"INSERT OR IGNORE INTO {table}(id, doc) VALUES (?, ?)", kept)
        return WriteCounts(inserted=cur.rowcount, skipped=len(rows) - cur.rowcount)
    seen = _existing_ids(conn, collection, [row[0] for row in rows])
    inserted = 0
    for doc_id, _ in rows:
        if doc_id not in seen:
            inserted += 1
            seen.add(doc_id)
    # ON CONFLICT ... DO UPDATE keeps the row's seq, so a replaced document keeps its partition
    # and a concurrent scan never sees the same id twice.
    conn.executemany(
        f"INSERT INTO {table}(id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
        rows,
    )
    return WriteCounts(inserted=inserted, replaced=len(rows) - inserted)


def _delete_ids(conn: sqlite3.Connection, collection: str, ids: Sequence[str]) -> int:
    deleted = 0
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = list(ids[start : start + _IN_CHUNK])
        marks = ",".join("?" * len(chunk))
        deleted += conn.execute(f"DELETE FROM {_table(collection)} WHERE id IN ({marks})", chunk).rowcount
    return deleted
