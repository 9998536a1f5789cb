"""A cap on the streaming calls the db-api serves at once, so unary calls always find a thread.

In the threaded gRPC server every call holds a thread until it ends, and a stream can last as
long as its client likes (a bulk write waits for the next batch, a health watch for a change).
Streams beyond `max_streams` are refused at once with RESOURCE_EXHAUSTED; the server's pool has
threads for the streams plus threads that only unary calls can reach.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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
            self._limited(behavior, details.method, handler.response_streaming),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _limited(self, behavior: Callable[..., Any], method: str, responds: bool) -> Callable[..., Any]:
        def limited(request: Any, context: grpc.ServicerContext) -> Any:
            if not self._slots.acquire(blocking=False):
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the db-api serves {self.max_streams} {STREAMS_BUSY} and has them all; "
                    f"{method} refused, try again shortly",
                )
            slot = _Slot(self._slots)
            if not responds:
                slot.running()  # its handler runs now, reading the client's stream, until it returns
            if not context.add_callback(slot.call_ended):
                slot.call_ended()  # the call has ended already
            try:
                result = behavior(request, context)
            except BaseException:
                slot.handler_ended()
                raise
            if responds and isinstance(result, Iterator):  # its handler runs as gRPC pulls it
                return slot.held_while(result)
            slot.handler_ended()
            return result

        return limited


class _Slot:
    """One stream's slot, held until its handler has ended, not merely its call: a client that
    cancels ends the call at once, while the handler may still be reading (a scan between two
    answers); freed then, the slot let new streams in beside handlers still at work, and a few
    cancelled scans held every thread. A response stream gRPC never started is freed when its
    call ends."""

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._lock = threading.Lock()
        self._state = "waiting"  # waiting -> running -> freed, or waiting -> freed

    def _free(self, unless: str) -> None:
        with self._lock:
            if self._state in (unless, "freed"):
                return
            self._state = "freed"
        self._slots.release()

    def running(self) -> None:
        with self._lock:
            self._state = "running"

    def call_ended(self) -> None:
        self._free(unless="running")  # a handler at work frees it when it ends

    def handler_ended(self) -> None:
        self._free(unless="")

    def held_while(self, responses: Iterator[Any]) -> Iterator[Any]:
        with self._lock:
            if self._state == "freed":  # the call ended before gRPC pulled the first answer
                return
            self._state = "running"
        try:
            yield from responses
        finally:
            self.handler_ended()
