"""TLS for the db-api clients: what a client trusts and, for a db-api that asks, its own certificate.

TLS is on when WORKBENCH_DB_API_TLS_CA is set. The files are read once, on the machine whose settings
they are; `ClientTls` holds their PEM bytes, so it can travel to Spark executors, which read no files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from pipeline_lib.settings import Settings
from pipeline_lib.wire.tls import TlsConfigError, check_ca, check_key_pair, read_pem

CA = "WORKBENCH_DB_API_TLS_CA"
CLIENT_CERT = "WORKBENCH_DB_API_TLS_CLIENT_CERT"
CLIENT_KEY = "WORKBENCH_DB_API_TLS_CLIENT_KEY"


@dataclass(frozen=True)
class ClientTls:
    ca: bytes
    client_cert: bytes | None = None
    client_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientTls | None:
        """The settings' TLS files, checked; None (plaintext) without WORKBENCH_DB_API_TLS_CA."""
        cert, key = settings.db_api_tls_client_cert, settings.db_api_tls_client_key
        if settings.db_api_tls_ca is None:
            if cert is not None or key is not None:
                raise TlsConfigError(
                    f"{CLIENT_CERT} or {CLIENT_KEY} is set but TLS is on only with {CA}: "
                    "set it to the CA that signed the db-api's certificate"
                )
            return None
        ca = read_pem(settings.db_api_tls_ca, CA)
        check_ca(ca, settings.db_api_tls_ca, CA)
        if cert is None and key is None:
            return cls(ca)
        if cert is None or key is None:
            given, missing = (CLIENT_CERT, CLIENT_KEY) if cert is not None else (CLIENT_KEY, CLIENT_CERT)
            raise TlsConfigError(f"{given} is set but {missing} is not set: a client certificate needs both")
        client_cert, client_key = read_pem(cert, CLIENT_CERT), read_pem(key, CLIENT_KEY)
        check_key_pair(cert, key, CLIENT_CERT, CLIENT_KEY)
        return cls(ca, client_cert, client_key)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.client_key, certificate_chain=self.client_cert
        )
