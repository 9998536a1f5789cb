"""Optional shared-secret authentication: metadata `authorization: Bearer <token>`.

Only the health check (`grpc.health.v1.Health/Check`, one answer) stays open, so that probes work
without it. Health watches and reflection are streams: each holds a server thread and a stream
slot for as long as its client likes, so anyone who could open them could take every slot and
refuse every scan and bulk write. They need the token (grpcurl: `-H 'authorization: Bearer …'`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

_OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check"})


class TokenAuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method in _OPEN_METHODS:
            return True
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None or self._authorized(details):
            return handler
        return _denying(handler)


def _deny(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or wrong db-api token: send metadata 'authorization: Bearer <token>' "
        "(the token is WORKBENCH_DB_API_TOKEN or the file var/secrets/db_api_token)",
    )


def _denying(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that refuses the call."""
    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(
        _deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
