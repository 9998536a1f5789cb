"""TLS for the db-api: PEM files read and checked once, at start, with errors that name the setting.

The server serves TLS with a certificate and key and, given a client CA, serves only clients whose
certificate that CA signed (mutual TLS). Clients use the same reading and checks (`pipeline_lib.client.tls`).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

CERT = "WORKBENCH_DB_API_TLS_CERT"
KEY = "WORKBENCH_DB_API_TLS_KEY"
CLIENT_CA = "WORKBENCH_DB_API_TLS_CLIENT_CA"


class TlsConfigError(ValueError):
    """TLS settings that cannot work: a file missing or unreadable, a certificate without its key."""


def read_pem(path: Path, setting: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{setting} {path} cannot be read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"{setting} {path} is not PEM (it has no -----BEGIN line)")
    return data


def check_key_pair(cert: Path, key: Path, cert_setting: str, key_setting: str) -> None:
    """Refuse a key that is not the certificate's (gRPC would only fail each handshake later)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"{key_setting} {key} does not match the certificate {cert_setting} {cert} "
            f"(or one of them is not valid PEM): {exc.reason or exc}"
        ) from None


def check_ca(pem: bytes, path: Path, setting: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        why = exc.reason or exc
        raise TlsConfigError(f"{setting} {path} holds no usable CA certificate: {why}") from None


def server_credentials(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> grpc.ServerCredentials | None:
    """The server's TLS credentials; None (plaintext) when no TLS file is given."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsConfigError(
                f"client certificates need TLS: {CLIENT_CA} is set, but not {CERT} and {KEY}"
            )
        return None
    if cert is None or key is None:
        given, missing = (CERT, KEY) if cert is not None else (KEY, CERT)
        raise TlsConfigError(f"{given} is set but {missing} is not set: TLS needs both")
    cert_pem, key_pem = read_pem(cert, CERT), read_pem(key, KEY)
    check_key_pair(cert, key, CERT, KEY)
    if client_ca is None:
        return grpc.ssl_server_credentials([(key_pem, cert_pem)])
    ca_pem = read_pem(client_ca, CLIENT_CA)
    check_ca(ca_pem, client_ca, CLIENT_CA)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )
