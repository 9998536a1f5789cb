"""TLS for the db-api, with certificates made here: server certificates, client certificates
(mutual TLS), and the clear errors a client gets when the two sides do not agree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from db_api.server import RunningServer, start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.client.sync import DbApiCallError, DbApiClient
from pipeline_lib.client.tls import ClientTls
from pipeline_lib.settings import Settings
from pipeline_lib.wire.tls import TlsConfigError
from tests.certificates import CertificateAuthority, Issued
from tests.conftest import TOKEN


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    other_ca: CertificateAuthority
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate signed by the other CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = CertificateAuthority(folder, "workbench-ca"), CertificateAuthority(folder, "other-ca")
    return Pki(
        ca,
        other,
        ca.issue("db-api", server=True),
        ca.issue("run", server=False),
        other.issue("x", server=False),
    )


def _serve(tmp_path: Path, pki: Pki, **tls: Any) -> Iterator[RunningServer]:
    store = SqliteStore(tmp_path / "tls.sqlite3")
    running = start_server(
        store, "127.0.0.1:0", token=TOKEN, tls_cert=pki.server.cert, tls_key=pki.server.key, **tls
    )
    yield running
    running.stop(grace=0)


@pytest.fixture
def tls_db_api(tmp_path: Path, pki: Pki) -> Iterator[RunningServer]:
    yield from _serve(tmp_path, pki)


@pytest.fixture
def mtls_db_api(tmp_path: Path, pki: Pki) -> Iterator[RunningServer]:
    """Serves only clients whose certificate the workbench CA signed."""
    yield from _serve(tmp_path, pki, tls_client_ca=pki.ca.pem)


def _settings(tmp_path: Path, running: RunningServer, **tls: Path) -> Settings:
    return Settings(data_dir=tmp_path, db_api_address=f"127.0.0.1:{running.port}", db_api_token=TOKEN, **tls)


def _refused(settings: Settings) -> DbApiCallError:
    with DbApiClient.from_settings(settings, timeout=5) as client, pytest.raises(DbApiCallError) as failed:
        client.health()
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    return failed.value


def test_a_tls_db_api_serves_a_client_that_trusts_its_ca(
    tls_db_api: RunningServer, pki: Pki, tmp_path: Path
) -> None:
    with DbApiClient.from_settings(_settings(tmp_path, tls_db_api, db_api_tls_ca=pki.ca.pem)) as client:
        assert client.health() == "SERVING"
        client.put_document("runs", "r1", {"status": "running"})
        assert client.get_document("runs", "r1") == {"_id": "r1", "status": "running"}


async def test_the_async_client_speaks_tls_too(tls_db_api: RunningServer, pki: Pki, tmp_path: Path) -> None:
    settings = _settings(tmp_path, tls_db_api, db_api_tls_ca=pki.ca.pem)
    async with AsyncDbApiClient.from_settings(settings) as client:
        assert await client.health() == "SERVING"
        assert await client.count("runs") == 0


def test_a_plaintext_client_of_a_tls_db_api_fails_with_a_clear_error(
    tls_db_api: RunningServer, tmp_path: Path
) -> None:
    failed = _refused(_settings(tmp_path, tls_db_api))
    assert "does the db-api serve TLS? Then set WORKBENCH_DB_API_TLS_CA" in str(failed)


def test_a_client_that_trusts_another_ca_fails_with_a_clear_error(
    tls_db_api: RunningServer, pki: Pki, tmp_path: Path
) -> None:
    failed = _refused(_settings(tmp_path, tls_db_api, db_api_tls_ca=pki.other_ca.pem))
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed)
    assert "the db-api's certificate is not trusted: WORKBENCH_DB_API_TLS_CA must hold the CA" in str(failed)


def test_a_tls_client_of_a_plaintext_db_api_fails_with_a_clear_error(
    sqlite_db_api: RunningServer, pki: Pki, tmp_path: Path
) -> None:
    failed = _refused(_settings(tmp_path, sqlite_db_api, db_api_tls_ca=pki.ca.pem))
    assert "the db-api does not serve TLS at this address" in str(failed)


def test_with_a_client_ca_only_clients_with_a_certificate_it_signed_are_served(
    mtls_db_api: RunningServer, pki: Pki, tmp_path: Path
) -> None:
    without = _refused(_settings(tmp_path, mtls_db_api, db_api_tls_ca=pki.ca.pem))
    assert "WORKBENCH_DB_API_TLS_CLIENT_CERT" in str(without)
    _refused(
        _settings(
            tmp_path,
            mtls_db_api,
            db_api_tls_ca=pki.ca.pem,
            db_api_tls_client_cert=pki.stranger.cert,
            db_api_tls_client_key=pki.stranger.key,
        )
    )
    signed = _settings(
        tmp_path,
        mtls_db_api,
        db_api_tls_ca=pki.ca.pem,
        db_api_tls_client_cert=pki.client.cert,
        db_api_tls_client_key=pki.client.key,
    )
    with DbApiClient.from_settings(signed) as client:
        assert client.health() == "SERVING"
        assert client.count("runs") == 0


def test_tls_settings_that_cannot_work_are_clear_errors_at_start(pki: Pki, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    try:
        with pytest.raises(TlsConfigError, match="WORKBENCH_DB_API_TLS_KEY is not set"):
            start_server(store, "127.0.0.1:0", tls_cert=pki.server.cert)
        with pytest.raises(TlsConfigError, match="client certificates need TLS"):
            start_server(store, "127.0.0.1:0", tls_client_ca=pki.ca.pem)
        with pytest.raises(TlsConfigError, match="does not match the certificate"):
            start_server(store, "127.0.0.1:0", tls_cert=pki.server.cert, tls_key=pki.client.key)
        with pytest.raises(TlsConfigError, match=r"WORKBENCH_DB_API_TLS_CERT .*nope\.crt"):
            start_server(store, "127.0.0.1:0", tls_cert=tmp_path / "nope.crt", tls_key=pki.server.key)
    finally:
        store.close()
    with pytest.raises(TlsConfigError, match="WORKBENCH_DB_API_TLS_CA"):
        ClientTls.from_settings(Settings(data_dir=tmp_path, db_api_tls_ca=tmp_path / "missing.pem"))
    with pytest.raises(TlsConfigError, match="WORKBENCH_DB_API_TLS_CLIENT_KEY is not set"):
        ClientTls.from_settings(
            Settings(data_dir=tmp_path, db_api_tls_ca=pki.ca.pem, db_api_tls_client_cert=pki.client.cert)
        )
    with pytest.raises(TlsConfigError, match="TLS is on only with WORKBENCH_DB_API_TLS_CA"):
        ClientTls.from_settings(
            Settings(
                data_dir=tmp_path,
                db_api_tls_client_cert=pki.client.cert,
                db_api_tls_client_key=pki.client.key,
            )
        )
    assert ClientTls.from_settings(Settings(data_dir=tmp_path)) is None  # plaintext: the default


def test_the_spark_source_carries_the_pem_to_executors_and_connects_with_it(
    mtls_db_api: RunningServer, pki: Pki, tmp_path: Path
) -> None:
    from pipeline_lib.spark.source import SourceOptions, tls_options

    settings = _settings(
        tmp_path,
        mtls_db_api,
        db_api_tls_ca=pki.ca.pem,
        db_api_tls_client_cert=pki.client.cert,
        db_api_tls_client_key=pki.client.key,
    )
    options = tls_options(settings)
    assert options["tls_ca"] == pki.ca.pem.read_text()  # PEM text: an executor reads no file
    config = SourceOptions.parse(
        {"collection": "runs", "address": settings.db_api_address, "token": TOKEN, **options}
    )
    assert "PRIVATE KEY" not in repr(config)
    with config.client() as client:
        assert client.health() == "SERVING"
    assert tls_options(Settings(data_dir=tmp_path)) == {}
