"""A clean's commits fit the db-api's messages however large its records are: a chunk is cut by
bytes as well as by rows. A few hundred quarantined records of long values (each within the
contract's limits) made one CommitClean larger than a message, refused, and every later clean failed
the same way: one submitter could stop the clean for good."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from db_api.server import start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.clean import rules
from pipeline_lib.clean.commits import fitting
from pipeline_lib.clean.pandas_job import run_clean_pandas
from pipeline_lib.client.sync import DbApiClient
from tests.conftest import TOKEN

MESSAGE_BYTES = 4 * 1024 * 1024  # the db-api's and the client's (64 MiB by default): a small test
LONG = 10_000  # characters of each value: the most a record's value may hold


@pytest.fixture
def small_messages(tmp_path) -> Iterator[DbApiClient]:  # type: ignore[no-untyped-def]
    server = start_server(
        SqliteStore(tmp_path / "store.sqlite3"), "127.0.0.1:0", token=TOKEN, max_message_bytes=MESSAGE_BYTES
    )
    try:
        with DbApiClient(f"127.0.0.1:{server.port}", TOKEN, max_message_bytes=MESSAGE_BYTES) as client:
            yield client
    finally:
        server.stop(grace=0)


def _long_records(n: int) -> pa.Table:
    """`n` raw records with consent, every answer far too long to be valid: all quarantined, each
    keeping its values as typed."""
    columns: dict[str, list[str]] = {
        "submission_id": [f"long-{i:04d}" for i in range(n)],
        "received_at": ["2026-12-01T10:00:00+00:00"] * n,
        "source": ["bulk"] * n,
    }
    for name in rules.FIELD_NAMES:
        columns[name] = ["yes" if name == "consent" else f"{name}{i}-" + "x" * LONG for i in range(n)]
    return pa.table(columns)


def test_a_clean_of_records_larger_than_a_message_commits_them_all(small_messages: DbApiClient) -> None:
    records = _long_records(120)  # ~10 MB to quarantine: more than two messages' worth
    for start in range(0, records.num_rows, 20):
        small_messages.write("raw", records.slice(start, 20), key="submission_id")
    report = run_clean_pandas(small_messages, run_id="clean-long-values")
    assert report.quarantined == 120 and report.raw_deleted == 120
    assert small_messages.count("raw") == 0 and small_messages.count("quarantine") == 120
    kept = small_messages.get_document("quarantine", "long-0007")
    assert kept is not None and kept["ses"] == "ses7-" + "x" * LONG  # as typed


def test_a_chunk_is_cut_into_whole_rows_that_fit() -> None:
    table = pa.table(
        {"submission_id": [f"r{i}" for i in range(100)], "v": ["x" * (i * 10) for i in range(100)]}
    )
    limit = table.nbytes // 3
    pieces = list(fitting(table, limit))
    assert pa.concat_tables(pieces).equals(table)  # every row once, in order
    assert len(pieces) > 3 and all(2 * p.nbytes <= limit or p.num_rows == 1 for p in pieces)
    assert list(fitting(table, 10 * table.nbytes)) == [table]  # one call when it fits
    assert [p.num_rows for p in fitting(table.slice(0, 1), 1)] == [1]  # a row alone is never split
