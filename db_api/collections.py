"""The collections the db-api serves, and how each is scanned.

A fixed registry keeps typos from silently creating new collections.
"""

from __future__ import annotations

from db_api.errors import UnknownCollection

# `raw` holds what submitters typed: it is scanned as text so cleaning sees the input as given.
TEXT_COLLECTIONS = frozenset({"raw"})

COLLECTIONS = frozenset({"raw", "cleaned", "quarantine", "processed", "schools", "runs", "users"})


def check_collection(name: str) -> str:
    """Return `name` if it is a served collection, else raise a NOT_FOUND error naming the known ones."""
    if name not in COLLECTIONS:
        known = ", ".join(sorted(COLLECTIONS))
        raise UnknownCollection(f"unknown collection {name!r}; the db-api serves: {known}")
    return name


def scans_as_text(name: str) -> bool:
    return name in TEXT_COLLECTIONS
