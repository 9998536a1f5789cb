"""A cap on the streaming calls the db-api serves at once, so unary calls always find a thread.

In the threaded gRPC server every call holds a thread until it ends, and a stream can last as
long as its client likes (a bulk write waits for the next batch, a health watch for a change).
Streams beyond `max_streams` are refused at once with RESOURCE_EXHAUSTED; the server's pool has
threads for the streams plus threads that only unary calls can reach.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from pipeline_lib.wire.errors import STREAMS_BUSY

_KINDS = {
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class StreamSlotsInterceptor(grpc.ServerInterceptor):
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._slots = threading.BoundedSemaphore(max_streams)

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        kind = (handler.request_streaming, handler.response_streaming)
        behavior = handler.stream_stream or handler.stream_unary or handler.unary_stream
        return _KINDS[kind](
            self._limited(behavior, details.method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _limited(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def limited(request: Any, context: grpc.ServicerContext) -> Any:
            if not self._slots.acquire(blocking=False):
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the db-api serves {self.max_streams} {STREAMS_BUSY} and has them all; "
                    f"{method} refused, try again shortly",
                )
            released = threading.Lock()

            def release() -> None:  # once, however the call ends
                if released.acquire(blocking=False):
                    self._slots.release()

            if not context.add_callback(release):
                release()  # the call has ended already
            return behavior(request, context)

        return limited
