"""Holding the embedded store's write lock from outside, as an operator's `sqlite3` shell or a
backup would: the db-api's writes wait for it while its reads go on (WAL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held_write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """The write lock of the store at `path` until the block ends (the connection may be used
    from another thread, e.g. to let go early)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
