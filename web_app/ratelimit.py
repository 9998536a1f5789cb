"""Rate limits: the one storage every limit, back-off and sign-out counts in, and the form's limit.

The storage is `WORKBENCH_LIMITS_URI` (any storage of the `limits` package), else the MongoDB of
`WORKBENCH_MONGO_URI`, else memory. Memory counts in one process only; the other two are shared
by every web worker and replica, so they behave as one app (`workbench web --workers N` refuses
to start several workers on memory). A shared storage is a network round trip: `off_loop` makes
it in a worker thread, under short timeouts, so a slow or missing database never holds the event
loop, and a storage that fails answers 503 (`StorageError`, see `web_app.problems`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from limits import parse
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from pipeline_lib.settings import Settings, redact_uri_password

T = TypeVar("T")

MEMORY = "memory://"
# Collections of the workbench database that hold the counters (the db-api never reads them).
MONGO_COLLECTIONS = {"counter_collection_name": "web_limits", "window_collection_name": "web_limit_windows"}
# A shared storage that does not answer within this long fails the request (503), not the loop.
MONGO_TIMEOUTS_MS = {"serverSelectionTimeoutMS": 2000, "connectTimeoutMS": 2000, "socketTimeoutMS": 2000}


def limits_uri(settings: Settings) -> str:
    """Where the counts are kept: the setting, else the store's MongoDB, else this process."""
    return settings.limits_uri or settings.mongo_uri or MEMORY


def is_shared(uri: str) -> bool:
    return not uri.startswith(MEMORY)


def limit_storage(settings: Settings) -> Storage:
    """Where the form's rate limit, the sign-in back-off and the sign-out list keep their counts."""
    uri = limits_uri(settings)
    if not is_shared(uri):
        return MemoryStorage()
    options: dict[str, Any] = {}
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        from pymongo.uri_parser import parse_uri

        database = parse_uri(uri).get("database") or "workbench"  # the store's default, too
        options = {"database_name": database, **MONGO_COLLECTIONS, **MONGO_TIMEOUTS_MS}
    try:
        storage = storage_from_string(uri, wrap_exceptions=True, **options)
    except ConfigurationError as exc:
        raise ValueError(
            f"WORKBENCH_LIMITS_URI {redact_uri_password(uri, uri)!r}: {redact_uri_password(str(exc), uri)}"
        ) from None
    if not isinstance(storage, Storage):  # an `async+` URI: the app calls its storage from threads
        shown = redact_uri_password(uri, uri)
        raise ValueError(f"WORKBENCH_LIMITS_URI {shown!r}: use the storage's plain scheme, not async+")
    return storage


async def off_loop(storage: Storage, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on `storage`: at once for memory, in a worker thread for a shared one."""
    if isinstance(storage, MemoryStorage):
        return function(*args)
    return await anyio.to_thread.run_sync(functools.partial(function, *args))


class FormRateLimiter:
    """Per-client limit of form posts (moving window)."""

    def __init__(self, rule: str, storage: Storage | None = None) -> None:
        self.rule = parse(rule)
        self.storage = storage or MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self.storage)

    async def allow(self, client: str) -> bool:
        """Count one form post from `client`; False once it is over the limit."""
        return await off_loop(self.storage, self._limiter.hit, self.rule, "form", client)

    async def retry_after(self, client: str) -> int:
        reset, _ = await off_loop(self.storage, self._limiter.get_window_stats, self.rule, "form", client)
        return max(1, int(reset - time.time()))
