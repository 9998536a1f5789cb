"""Documents a request brought already encoded as BSON (`pipeline_lib.wire.arrow_bson`).

The embedded store writes their bytes as they are; a backend that wants dicts (MongoDB's driver
encodes its own) reads them as a sequence of decoded documents, decoded once, when first read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import bson

from pipeline_lib.wire.bson_codec import DECODE_OPTIONS, Document


class EncodedDocuments(Sequence[Document]):
    """Documents as BSON: each one's `_id` and bytes, and the values of the top-level fields the
    store reads without decoding (`fields`, e.g. a cleaned record's `duplicates`)."""

    def __init__(self, ids: list[str], blobs: list[bytes], fields: dict[str, list[Any]]) -> None:
        self.ids = ids
        self.blobs = blobs
        self._fields = fields
        self._decoded: list[Document] | None = None

    def rows(self) -> list[tuple[str, bytes]]:
        """(id, BSON bytes) per document."""
        return list(zip(self.ids, self.blobs, strict=True))

    def values(self, name: str) -> list[Any]:
        """The top-level field `name` of each document (None where it has none), if it was kept."""
        if name in self._fields:
            return self._fields[name]
        return [doc.get(name) for doc in self]

    def _documents(self) -> list[Document]:
        if self._decoded is None:
            self._decoded = bson.decode_all(b"".join(self.blobs), codec_options=DECODE_OPTIONS)
        return self._decoded

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Document: ...

    @overload
    def __getitem__(self, index: slice) -> list[Document]: ...

    def __getitem__(self, index: int | slice) -> Document | list[Document]:
        return self._documents()[index]


def ids_of(docs: Sequence[Document]) -> list[str]:
    return docs.ids if isinstance(docs, EncodedDocuments) else [doc["_id"] for doc in docs]


def values_of(docs: Sequence[Document], name: str) -> list[Any]:
    """The top-level field `name` of each document, None where it has none."""
    return docs.values(name) if isinstance(docs, EncodedDocuments) else [doc.get(name) for doc in docs]
