"""A client that goes away mid-stream is normal: the db-api logs it in one line, no traceback."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pytest

from pipeline_lib.client.sync import DbApiClient


def _servicer_records(caplog: pytest.LogCaptureFixture, rpc: str) -> list[logging.LogRecord]:
    """The servicer's records about `rpc`, once there are any (the server notices a cancel in
    its own thread), plus a moment for any second record to show up."""

    def said() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "db_api.servicer" and getattr(r, "rpc", "") == rpc]

    deadline = time.monotonic() + 5
    while not said() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    return said()


def _server_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records with a traceback from the server's side (the client's gRPC logs its own)."""
    server = [r for r in caplog.records if r.name.startswith("db_api") or r.name == "grpc._server"]
    return [f"{r.name}: {r.getMessage()}" for r in server if r.exc_info or r.exc_text]


def test_a_scan_cancelled_by_its_client_logs_one_line_without_a_traceback(
    sqlite_client: DbApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    sqlite_client.write("raw", pd.DataFrame({"_id": [f"r{i}" for i in range(3000)], "ses": ["1"] * 3000}))
    caplog.set_level(logging.DEBUG)
    batches = sqlite_client.scan_batches("raw", batch_size=10)
    assert next(batches).num_rows == 10
    batches.close()  # the client goes away after one batch of many: gRPC cancels the call

    records = _servicer_records(caplog, "Scan")
    assert [(r.levelno, r.getMessage()) for r in records] == [(logging.INFO, "rpc cancelled")]
    assert _server_tracebacks(caplog) == []
    assert sqlite_client.count("raw") == 3000  # and the server serves on


def test_a_bulk_write_cancelled_by_its_client_logs_one_line_without_a_traceback(
    sqlite_client: DbApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    def cut_short() -> Iterator[pa.Table]:
        yield pa.table({"_id": ["w1"], "ses": ["1"]})
        time.sleep(0.5)  # the first message reaches the server, which waits for the next
        raise ValueError("the upload was cut short")

    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match="cut short"):
        sqlite_client.write("raw", cut_short(), batch_size=1)

    records = _servicer_records(caplog, "WriteBatches")
    # One line at most: gRPC may end the server's request stream before it marks the call
    # cancelled (seen twice under CI), and then there is nothing to log.
    assert [(r.levelno, r.getMessage()) for r in records] in ([], [(logging.INFO, "rpc cancelled")])
    assert _server_tracebacks(caplog) == []
    assert sqlite_client.get("raw", "w1") is not None  # the message before the cut stays committed
