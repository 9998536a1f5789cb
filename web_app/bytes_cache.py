"""Rendered bytes kept by key, the least recently used dropped first past a total size: pages of
run notebooks (`run_notebooks`), PNGs of charts (`chart_renders`). State lives on the event loop."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class BytesCache(Generic[K]):
    """At most `max_bytes` in all; a value larger than that alone is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.total_bytes = 0
        self._values: OrderedDict[K, bytes] = OrderedDict()

    def get(self, key: K) -> bytes | None:
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def put(self, key: K, value: bytes) -> None:
        if len(value) > self.max_bytes or key in self._values:
            return
        self._values[key] = value
        self.total_bytes += len(value)
        while self.total_bytes > self.max_bytes:
            _, dropped = self._values.popitem(last=False)
            self.total_bytes -= len(dropped)
