"""A run's documents and its release published as one (docs/privacy.md, "Release differencing").

Public views read `processed` document by document, and the next run differences its figures
against the release. Written one after the other, a run that died between them (killed, the db-api
away past the retries, its lease lost) left the public seeing figures its release did not hold, or
the reverse: the next run then compared against figures the public had not seen, and could show
one that moved by fewer than k students from one the public had.

So a publication is staged first, in `releases` beside the release (analyst-only): the documents,
then the release, then a small marker naming them, whose write is the commit point. Then the
documents go to `processed`, the release to its place, and the stage is removed. A run reading the
release finds a marker when its writer died after the commit point: that publication counts (its
release is the one to difference against), and the next run that publishes finishes it first, so
the public goes from one whole publication to the next. Without a marker (its writer died before),
`processed` and the release are as they were; the next publication removes that stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import PROCESSED, RELEASES
from pipeline_lib.process.results import ResultDocument

STAGED_FOR = "staged_for"  # on a staged document: the release id it is staged for
MAX_STAGED = 10_000  # staged documents listed to remove: far more than a run publishes


class UnreadableRelease(RuntimeError):
    """The kept release (or a publication's staged one) cannot be read: publishing without it
    could undo its protection."""


def _marker(release_id: str) -> str:
    return f"{release_id}/publishing"


def _staged_release(release_id: str) -> str:
    return f"{release_id}/staged-release"


def _staged(release_id: str, key: str) -> str:
    return f"{release_id}/staged/{key}"


def publish(
    client: DbApiClient,
    release_id: str,
    documents: Sequence[ResultDocument],
    release: Mapping[str, Any],
    *,
    removed: Sequence[str] = (),
) -> None:
    """Publish `documents` into `processed`, remove the `removed` keys from it, and keep `release`
    (the stored form) under `release_id`: all of it, or (the run dying before the commit point)
    none. A publication of `release_id` left unfinished is finished first."""
    finish_unfinished(client, release_id)
    stored = {doc.key: doc.model_dump(mode="json") for doc in documents}
    for key, document in stored.items():
        client.put_document(RELEASES, _staged(release_id, key), {**document, STAGED_FOR: release_id})
    client.put_document(RELEASES, _staged_release(release_id), dict(release))
    client.put_document(RELEASES, _marker(release_id), {"documents": list(stored), "removed": list(removed)})
    _complete(client, release_id, stored, release, list(removed))


def pending_release(client: DbApiClient, release_id: str) -> dict[str, Any] | None:
    """The stored release of a publication of `release_id` committed but not finished (its writer
    died after the commit point): the one the public is going to see, so the one to difference
    against. None when there is none."""
    if client.get_document(RELEASES, _marker(release_id)) is None:
        return None
    return _staged_release_of(client, release_id)


def finish_unfinished(client: DbApiClient, release_id: str) -> bool:
    """Finish a publication of `release_id` committed but not finished; whether there was one."""
    marker = client.get_document(RELEASES, _marker(release_id))
    if marker is None:
        return False
    stored = {}
    for key in marker["documents"]:
        staged = client.get_document(RELEASES, _staged(release_id, key))
        if staged is None:  # staged before the marker was written: a store that lost it
            raise _lost(release_id, f"document {key!r}")
        stored[key] = {name: value for name, value in _without_id(staged).items() if name != STAGED_FOR}
    release = _staged_release_of(client, release_id)
    _complete(client, release_id, stored, release, list(marker["removed"]))
    return True


def _staged_release_of(client: DbApiClient, release_id: str) -> dict[str, Any]:
    """The staged release of a publication whose marker was read."""
    staged = client.get_document(RELEASES, _staged_release(release_id))
    if staged is None:  # a marker is written after its release: a store that lost it
        raise _lost(release_id, "its release")
    return _without_id(staged)


def discard(client: DbApiClient, release_id: str) -> bool:
    """Drop a publication under way (its marker and its stage), whether there was one: with the
    release reset, the next run publishes anew."""
    dropped = client.delete_ids(RELEASES, [_marker(release_id), _staged_release(release_id)])
    _remove_stage(client, release_id)
    return dropped > 0


def _lost(release_id: str, what: str) -> UnreadableRelease:
    return UnreadableRelease(
        f"the publication under way of {release_id!r} (collection {RELEASES!r}) has lost {what}; "
        f"nothing was written. Remove it with `workbench release reset` to start a new release "
        f"(earlier public figures can then be differenced against the new ones)"
    )


def _complete(
    client: DbApiClient,
    release_id: str,
    documents: Mapping[str, Mapping[str, Any]],
    release: Mapping[str, Any],
    removed: list[str],
) -> None:
    """Write the staged documents and release to their places, then remove the stage (the marker
    first: once it is gone, nothing reads the rest). Run again after a failure, it writes the same."""
    for key, document in documents.items():
        client.put_document(PROCESSED, key, document)
    if removed:
        client.delete_ids(PROCESSED, removed)
    client.put_document(RELEASES, release_id, dict(release))
    client.delete_ids(RELEASES, [_marker(release_id)])
    client.delete_ids(RELEASES, [_staged_release(release_id), *(_staged(release_id, k) for k in documents)])
    _remove_stage(client, release_id)  # what is left: a stage a run that died before its marker left


def _remove_stage(client: DbApiClient, release_id: str) -> None:
    """Every staged document of `release_id`: this publication's, and any a run that died before
    its marker left (under keys the next publication may not stage again)."""
    staged = client.list_documents(RELEASES, [(STAGED_FOR, "eq", release_id)], limit=MAX_STAGED)
    if staged:
        client.delete_ids(RELEASES, [str(document["_id"]) for document in staged])


def _without_id(document: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != "_id"}
