"""The school list, kept in the web app so anonymous pages do not each cost the db-api a listing.

The list is read at most once per `ttl` seconds (changes made elsewhere, e.g. by a demo import
straight to the db-api, show within that time); a change an admin makes through this app
invalidates it at once. Requests that find it stale at the same moment share one listing.

What pages make of the list (the API's JSON, the form's suggestions) is made once per listing too
(`derived`): with 10,000 schools each took ~25 ms of the event loop, per anonymous request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.wire.requests import DbApiCallError

MAX_SCHOOLS = 10_000
SCHOOL_CACHE_SECONDS = 60.0
T = TypeVar("T")


class SchoolCache:
    def __init__(
        self, ttl: float = SCHOOL_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._schools: list[dict] | None = None
        self._expires = 0.0
        self._generation = 0  # bumped by every invalidation: a listing begun before it is not kept
        self._loading: tuple[int, asyncio.Future[list[dict]]] | None = None
        self._derived: dict[Callable[..., Any], tuple[list[dict], Any]] = {}  # build -> (of list, made)

    async def schools(self, db: AsyncDbApiClient) -> list[dict]:
        """The schools sorted by `school_id` (shared: do not change them). While the db-api is
        unreachable the last list read is served; with none, the db-api's error is raised."""
        if self._schools is not None and self._clock() < self._expires:
            return self._schools
        if self._loading is None or self._loading[0] != self._generation or self._loading[1].done():
            self._loading = (self._generation, asyncio.ensure_future(self._load(db, self._generation)))
        try:
            # Shielded: a caller that goes away does not cancel the listing the others wait for.
            return await asyncio.shield(self._loading[1])
        except DbApiCallError:
            if self._schools is None:
                raise
            return self._schools

    async def derived(self, db: AsyncDbApiClient, build: Callable[[list[dict]], T]) -> T:
        """`build(schools)`, made once per list read (`schools`' errors as there)."""
        schools = await self.schools(db)
        made = self._derived.get(build)
        if made is None or made[0] is not schools:
            made = (schools, build(schools))
            self._derived[build] = made
        return made[1]

    def invalidate(self) -> None:
        """The list changed: the next request reads it again."""
        self._generation += 1
        self._expires = 0.0

    async def _load(self, db: AsyncDbApiClient, generation: int) -> list[dict]:
        docs = await db.list_documents("schools", limit=MAX_SCHOOLS)
        schools = sorted(docs, key=lambda doc: str(doc.get("school_id")))
        if generation == self._generation:
            self._schools, self._expires = schools, self._clock() + self.ttl
        return schools
