"""Shared fixtures: real stores on disk, real wire-protocol servers, a real db-api on loopback."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from db_api.server import RunningServer, start_server
from db_api.store.base import Store
from db_api.store.mongo import MongoStore
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from tests import wire_servers

TOKEN = "test-token"
# Each test's fresh data dir would build Spark's class-data archive in the background (about 30 s
# of CPU each, `pipeline_lib.spark.class_archive`); its own tests run with it on, as users do.
os.environ.setdefault("WORKBENCH_SPARK_CLASS_ARCHIVE", "false")
MONGO_BACKENDS = ["secantusdb", "ferretdb"] + (["mongod"] if shutil.which("mongod") else [])


def _mongo_store(server: wire_servers.WireServer) -> MongoStore:
    """A fresh database per test, so tests never see each other's documents."""
    base, _, query = server.uri.partition("?")
    database_uri = f"{base.rstrip('/')}/t{uuid.uuid4().hex[:12]}" + (f"?{query}" if query else "")
    return MongoStore(database_uri)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`backend` runs a test on every store: embedded SQLite and each MongoDB server."""
    if "backend" in metafunc.fixturenames:
        params = [pytest.param("sqlite")] + [
            pytest.param(name, marks=pytest.mark.mongo) for name in MONGO_BACKENDS
        ]
        metafunc.parametrize("backend", params)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the shared Spark session starts a JVM: it is a `spark` and `slow` test
    whether or not its module says so (`make test-fast` leaves those out, and needs no Java)."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    if backend == "sqlite":
        opened: Store = SqliteStore(tmp_path / "store.sqlite3")
    else:
        server = request.getfixturevalue(f"{backend}_server")
        opened = _mongo_store(server)
    yield opened
    opened.close()


def _server_fixture(name: str):
    @pytest.fixture(scope="session")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[wire_servers.WireServer]:
        starters = {
            "secantusdb": wire_servers.start_secantusdb,
            "ferretdb": wire_servers.start_ferretdb,
            "mongod": wire_servers.start_mongod,
        }
        server = starters[name](tmp_path_factory.mktemp(name))
        yield server
        server.stop()

    return fixture


secantusdb_server = _server_fixture("secantusdb")
ferretdb_server = _server_fixture("ferretdb")
mongod_server = _server_fixture("mongod")


@pytest.fixture
def running_db_api(store: Store) -> Iterator[RunningServer]:
    running = start_server(store, "127.0.0.1:0", token=TOKEN, max_message_bytes=4 * 1024 * 1024)
    yield running
    running.stop(grace=1)


@pytest.fixture
def client(running_db_api: RunningServer) -> Iterator[DbApiClient]:
    with DbApiClient(f"127.0.0.1:{running_db_api.port}", TOKEN, max_message_bytes=64 * 1024 * 1024) as c:
        yield c


@pytest.fixture
def sqlite_db_api(tmp_path: Path) -> Iterator[RunningServer]:
    """A db-api on the embedded store only, for tests of the service itself."""
    running = start_server(
        SqliteStore(tmp_path / "store.sqlite3"), "127.0.0.1:0", token=TOKEN, max_message_bytes=4 * 1024 * 1024
    )
    yield running
    running.stop(grace=1)


@pytest.fixture
def sqlite_client(sqlite_db_api: RunningServer) -> Iterator[DbApiClient]:
    with DbApiClient(f"127.0.0.1:{sqlite_db_api.port}", TOKEN, max_message_bytes=64 * 1024 * 1024) as c:
        yield c


_SPARK_ENV = ("SPARK_LOCAL_IP", "PYSPARK_PYTHON", "SPARK_LOCAL_DIRS", "WORKBENCH_SPARK_ZYGOTE")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One local[2] session for every Spark test (Spark keeps one per process anyway); tests
    name their db-api with options. The environment get_spark sets is restored afterwards."""
    import os

    from pipeline_lib.settings import Settings
    from pipeline_lib.spark.session import get_spark

    saved = {name: os.environ.get(name) for name in _SPARK_ENV}
    settings = Settings(data_dir=tmp_path_factory.mktemp("spark"), db_api_address="127.0.0.1:9")
    session = get_spark("local[2]", app_name="workbench-tests", settings=settings)
    yield session
    session.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
