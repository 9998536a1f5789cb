"""Closing the embedded store while calls run: it waits for them, and later calls fail clearly.

Python's sqlite3 crashes the whole process if a connection is closed under a running statement,
which is what a db-api shutdown with calls still in flight used to do.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from db_api.store.sqlite import SqliteStore
from pipeline_lib.wire.errors import Unavailable


def test_close_waits_for_running_writes_and_refuses_new_calls(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    started = threading.Barrier(5)
    outcomes: list[str] = []

    def write_until_closed(worker: int) -> None:
        started.wait()
        for batch in range(10_000):
            docs = [{"_id": f"w{worker}-{batch}-{i}", "v": i} for i in range(200)]
            try:
                store.write("raw", docs, upsert=True)
            except Unavailable:
                outcomes.append("refused")
                return
        outcomes.append("finished")

    writers = [threading.Thread(target=write_until_closed, args=(n,)) for n in range(4)]
    for writer in writers:
        writer.start()
    started.wait()
    store.close()
    for writer in writers:
        writer.join()

    assert outcomes == ["refused"] * 4
    with pytest.raises(Unavailable, match="closed"):
        store.count("raw")
    reopened = SqliteStore(tmp_path / "s.sqlite3")
    try:
        # Every write either committed whole or not at all: batches of exactly 200.
        assert reopened.count("raw") % 200 == 0
    finally:
        reopened.close()
