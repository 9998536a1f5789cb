"""Builds and runs the gRPC server: the DbApi service, health checking and reflection.

Plaintext by default (on loopback); TLS, and mutual TLS, when given certificate files.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from db_api.auth import TokenAuthInterceptor
from db_api.scan_pages import PageEncoder
from db_api.servicer import DbApiServicer
from db_api.store.base import Store
from db_api.stream_slots import StreamSlotsInterceptor
from pipeline_lib.wire.proto import dbapi_pb2, dbapi_pb2_grpc
from pipeline_lib.wire.tls import server_credentials

log = logging.getLogger(__name__)

SERVICE_NAME = dbapi_pb2.DESCRIPTOR.services_by_name["DbApi"].full_name


class PortInUse(RuntimeError):
    pass


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    store: Store
    health: health.HealthServicer
    encoder: PageEncoder

    def stop(self, grace: float = 5.0) -> None:
        """Stop taking calls, let running ones finish for `grace` seconds, then close the store."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.encoder.close()
        self.store.close()


def start_server(
    store: Store,
    address: str,
    *,
    token: str | None = None,
    max_message_bytes: int = 64 * 1024 * 1024,
    max_workers: int = 16,
    max_streams: int = 16,
    scan_workers: int = 0,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_client_ca: Path | None = None,
) -> RunningServer:
    """Start serving on `address` (host:port; port 0 picks a free one) and return at once.

    With `tls_cert` and `tls_key` (PEM files) it serves TLS only; with `tls_client_ca` too, only
    clients whose certificate that CA signed. Bad TLS files raise `TlsConfigError` before it serves.

    At most `max_streams` streaming calls (scans, bulk writes, health watches) are served at once,
    more are refused with RESOURCE_EXHAUSTED; `max_workers` threads more than that are left for
    unary calls, however many streams are open. `scan_workers` processes turn stored BSON into
    Arrow for scans (0: in the server process).
    """
    credentials = server_credentials(tls_cert, tls_key, tls_client_ca)
    if credentials is None and not _loopback(address):
        log.warning(
            "db-api serves plaintext beyond loopback: its token and data cross the network unencrypted; "
            "set WORKBENCH_DB_API_TLS_CERT and WORKBENCH_DB_API_TLS_KEY",
            extra={"address": address},
        )
    interceptors: list[grpc.ServerInterceptor] = [TokenAuthInterceptor(token)] if token else []
    interceptors.append(StreamSlotsInterceptor(max_streams))  # after auth: a refused call takes no slot
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers + max_streams, thread_name_prefix="db-api"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Without this a second server could silently share the port.
            ("grpc.so_reuseport", 0),
        ],
    )
    encoder = PageEncoder(scan_workers)
    dbapi_pb2_grpc.add_DbApiServicer_to_server(DbApiServicer(store, encoder, max_message_bytes), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        encoder.close()
        raise PortInUse(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        encoder.close()
        raise PortInUse(f"cannot listen on {address}: the port is taken or the address is invalid")
    server.start()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, store, health_servicer, encoder)


def _loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, or "" (every interface)


def stop_requests() -> threading.Event:
    """An event that SIGINT and SIGTERM set from now on. Installed before the server listens, so a
    stop sent as soon as the port opens still stops it gracefully."""
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("db-api stopping", extra={"signal": signal.Signals(signum).name})
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stopping


def serve_forever(running: RunningServer, stopping: threading.Event) -> None:
    """Block until `stopping` is set, then stop gracefully."""
    # A signal can land on any thread (gRPC's, the executor's); its Python handler then waits for
    # the main thread to run Python code, which a wait without a time-out would never do.
    while not stopping.wait(0.5):
        pass
    running.stop()
