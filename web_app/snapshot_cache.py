"""The dashboard snapshots, kept in the web app: many viewers opening a dashboard at once cost the
db-api one read per `ttl` seconds, and each rendering is sanitised once, not once per view.

A snapshot stores its plots inline (data URLs), so it is one self-contained page in the archive.
Served, each plot becomes its own URL named by its content's digest (`/dashboards/<name>/images/
<digest>.png`), which browsers keep: the Overview page of 233 KiB becomes 8 KiB, and a viewer who comes
back fetches only that. Every web process derives the same names from the same rendering.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.contract.collections import DASHBOARDS
from web_app.sanitise import clean_html

log = logging.getLogger(__name__)
SNAPSHOT_CACHE_SECONDS = 5.0
MAX_SNAPSHOTS = 100
# Inline image kinds served as files: media type and file extension.
IMAGE_KINDS = {
    "png": ("image/png", "png"),
    "jpeg": ("image/jpeg", "jpg"),
    "svg+xml": ("image/svg+xml", "svg"),
}
# An inline image as the sanitiser writes it (attributes in double quotes); linear to match.
_INLINE_IMAGE = re.compile(r'src="data:image/(png|jpeg|svg\+xml);base64,([A-Za-z0-9+/=]*)"')


@dataclass(frozen=True)
class SnapshotImage:
    media_type: str
    data: bytes


def extract_images(name: str, html: str) -> tuple[str, dict[str, SnapshotImage]]:
    """`html` with each inline image replaced by its URL (`<digest>.<ext>` under the dashboard),
    and the images by file name. An image that does not decode stays inline."""
    images: dict[str, SnapshotImage] = {}

    def to_url(found: re.Match[str]) -> str:
        kind, encoded = found[1], found[2]
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return found[0]
        media_type, extension = IMAGE_KINDS[kind]
        file_name = f"{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
        images[file_name] = SnapshotImage(media_type, data)
        return f'src="/dashboards/{name}/images/{file_name}"'

    return _INLINE_IMAGE.sub(to_url, html), images


@dataclass(frozen=True)
class ServedSnapshot:
    name: str
    title: str
    rendered_at: dt.datetime | None
    run_id: str | None
    html: Markup  # sanitised, its images as URLs
    images: dict[str, SnapshotImage]  # by file name


class SnapshotCache:
    def __init__(
        self,
        ttl: float = SNAPSHOT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        names: Callable[[], list[str]] = list,
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._list_names = names
        # The dashboards there are (`catalog.served_names`), listed with each read, not per request.
        self.names: list[str] = []
        self._snapshots: dict[str, ServedSnapshot] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None  # the background read under way

    async def snapshots(self, db: AsyncDbApiClient) -> dict[str, ServedSnapshot]:
        """Every stored snapshot by dashboard name. Once read, they are served at once: when they
        are older than `ttl`, one read in the background replaces them (no request waits for it:
        a read that waited, under load, held every request to these pages for seconds, with its
        worker threads waiting on the GIL). While the db-api is unreachable the last ones read are
        served; with none yet, requests wait for the first read, and its error is raised."""
        if self._snapshots is not None:
            if self._clock() >= self._expires and self._refreshing is None:
                self._refreshing = asyncio.create_task(self._refresh_in_background(db))
            return self._snapshots
        async with self._lock:  # the first requests share the first read
            if self._snapshots is None:
                await self._read(db)
            assert self._snapshots is not None
            return self._snapshots

    async def _read(self, db: AsyncDbApiClient) -> None:
        documents = await db.list_documents(DASHBOARDS, limit=MAX_SNAPSHOTS)
        self._snapshots = await run_in_threadpool(self._served, documents, self._snapshots or {})
        self.names = await run_in_threadpool(self._list_names)
        self._expires = self._clock() + self.ttl

    async def _refresh_in_background(self, db: AsyncDbApiClient) -> None:
        try:
            await self._read(db)
        except Exception:  # the snapshots read before stay; the next request after a second retries
            log.warning("reading the dashboard snapshots failed; serving the last ones read", exc_info=True)
            self._expires = self._clock() + min(self.ttl, 1.0)
        finally:
            self._refreshing = None

    @staticmethod
    def _served(documents: list[dict], known: dict[str, ServedSnapshot]) -> dict[str, ServedSnapshot]:
        served = {}
        for document in documents:
            name, rendered_at = str(document.get("_id")), document.get("rendered_at")
            before = known.get(name)
            if before is not None and before.rendered_at == rendered_at:
                served[name] = before  # the same rendering: already sanitised
                continue
            html, images = extract_images(name, clean_html(str(document.get("html") or "")))
            served[name] = ServedSnapshot(
                name=name,
                title=str(document.get("title") or name),
                rendered_at=rendered_at if isinstance(rendered_at, dt.datetime) else None,
                run_id=document.get("run_id") if isinstance(document.get("run_id"), str) else None,
                html=Markup(html),
                images=images,
            )
        return served
