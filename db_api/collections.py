"""How the db-api checks a collection name and how it scans each collection (the names live in
`pipeline_lib.contract.collections`)."""

from __future__ import annotations

from pipeline_lib.contract.collections import COLLECTIONS, TEXT_COLLECTIONS
from pipeline_lib.wire.errors import UnknownCollection


def check_collection(name: str) -> str:
    """Return `name` if it is a served collection, else raise a NOT_FOUND error naming the known ones."""
    if name not in COLLECTIONS:
        known = ", ".join(sorted(COLLECTIONS))
        raise UnknownCollection(f"unknown collection {name!r}; the db-api serves: {known}")
    return name


def scans_as_text(name: str) -> bool:
    return name in TEXT_COLLECTIONS
