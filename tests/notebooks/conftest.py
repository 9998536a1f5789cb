"""What the notebook tests share: a db-api on the embedded store that the notebook's kernel finds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from db_api.server import RunningServer, start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from tests.conftest import TOKEN


@pytest.fixture
def notebook_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RunningServer, DbApiClient]]:
    running = start_server(SqliteStore(tmp_path / "store.sqlite3"), "127.0.0.1:0", token=TOKEN)
    # The notebook's kernel inherits these: where the data lives and the db-api's token.
    monkeypatch.setenv("WORKBENCH_DB_API_TOKEN", TOKEN)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "var"))
    client = DbApiClient(f"127.0.0.1:{running.port}", TOKEN)
    yield running, client
    client.close()
    running.stop(grace=1)
