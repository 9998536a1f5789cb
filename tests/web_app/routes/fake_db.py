"""An in-memory stand-in for the web app's db-api client, for the fast route tests only: the
routes' logic without a db-api. What the db-api itself does (BSON, Arrow, filters, limits) is
proved by the end-to-end tests beside these, which use a real one."""

from __future__ import annotations

import copy
from typing import Any

import grpc
import pyarrow as pa

from pipeline_lib.wire.requests import DbApiCallError, InsertResult, WriteResult


class FakeDb:
    """Collections of documents by id, the calls of `AsyncDbApiClient` the web app makes; with
    `down` set, every call fails as an unreachable db-api does."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, dict]] = {}
        self.down = False
        self.closed = False

    def stored(self, collection: str) -> dict[str, dict]:
        """What a test reads back: the collection's documents by id."""
        return self.collections.get(collection, {})

    def _docs(self, collection: str) -> dict[str, dict]:
        if self.down:
            raise DbApiCallError("fake", grpc.StatusCode.UNAVAILABLE, "the fake db-api is down")
        return self.collections.setdefault(collection, {})

    async def count(self, collection: str, filter: Any = None) -> int:
        return len(self._docs(collection))

    async def get(self, collection: str, doc_id: str) -> dict | None:
        found = self._docs(collection).get(doc_id)
        return copy.deepcopy(found) if found is not None else None

    get_document = get

    async def insert_one(self, collection: str, document: dict) -> InsertResult:
        docs = self._docs(collection)
        doc_id = str(document["_id"])
        if doc_id in docs:
            return InsertResult(doc_id, False, copy.deepcopy(docs[doc_id]))
        docs[doc_id] = copy.deepcopy(document)
        return InsertResult(doc_id, True, copy.deepcopy(document))

    async def put_document(self, collection: str, doc_id: str, document: dict) -> bool:
        docs = self._docs(collection)
        created = doc_id not in docs
        docs[doc_id] = {**copy.deepcopy(document), "_id": doc_id}
        return created

    async def list_documents(
        self, collection: str, filter: Any = None, *, limit: int = 100, newest_first: bool = False
    ) -> list[dict]:
        docs = list(self._docs(collection).values())
        for field, op, value in filter or []:
            assert op == "eq", "the fake knows equality only"
            docs = [d for d in docs if d.get(field) == value]
        return copy.deepcopy((docs[::-1] if newest_first else docs)[:limit])

    async def write(
        self, collection: str, data: pa.Table, *, mode: str = "insert", key: str | None = None
    ) -> WriteResult:
        docs = self._docs(collection)
        inserted = replaced = skipped = 0
        for row in data.to_pylist():
            doc_id = str(row[key]) if key else str(len(docs))
            if doc_id not in docs:
                inserted += 1
            elif mode == "upsert":
                replaced += 1
            else:
                skipped += 1
                continue
            docs[doc_id] = {**row, "_id": doc_id}
        return WriteResult(messages=1, inserted=inserted, replaced=replaced, skipped=skipped)

    async def close(self) -> None:
        self.closed = True
