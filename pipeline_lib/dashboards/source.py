"""What a dashboard reads, and only that: result documents from `processed` (as the public sees
them: groups under k suppressed, rows hidden so others cannot be derived, held rows at their
previous figures, each with its note; withheld documents without figures; held documents as they
were published, with since when) and run records from `runs`, through the db-api.

Reading a few small documents keeps a dashboard fast whatever the data size; a document that is
missing or does not read as a result is left out, so the page shows what there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import PROCESSED, RUNS
from pipeline_lib.process.results import PublicResult, ResultDocument, suppress
from pipeline_lib.runs.freshness import Freshness, latest_finished
from pipeline_lib.runs.records import RunRecord, load_readable
from pipeline_lib.settings import Settings, get_settings
from pipeline_lib.wire.requests import DbApiCallError


class DataUnavailable(RuntimeError):
    """The db-api could not be asked; the message says so in words for the page."""


@dataclass
class Results:
    """Public views of the documents found, by key."""

    k: int
    found: dict[str, PublicResult] = field(default_factory=dict)
    error: str | None = None  # why nothing could be read, for the page
    failed: set[str] = field(default_factory=set)  # keys of analyses stored as failures (no result)
    freshness: Freshness | None = None  # how old the newest figures are (`page.load` sets it)
    withheld: dict[str, str] = field(default_factory=dict)  # keys withheld from public views, and why
    not_updated: dict[str, str] = field(default_factory=dict)  # keys shown as published earlier, and since

    def get(self, key: str) -> PublicResult | None:
        """The public view of the document `key`, if it was found."""
        return self.found.get(key)

    def __bool__(self) -> bool:
        return bool(self.found)

    def newest(self) -> PublicResult | None:
        """The most recently computed of the documents found."""
        return max(self.found.values(), key=lambda r: r.computed_at, default=None)


def connect(settings: Settings | None = None) -> DbApiClient:
    """A db-api client that gives up after five seconds: a page says so rather than hang."""
    return DbApiClient.from_settings(settings or get_settings(), timeout=5.0)


def _add(results: Results, raw: dict) -> None:
    """The public view of a stored document, unless it does not read as a result."""
    try:
        doc = ResultDocument.model_validate(raw)
    except ValidationError:
        return
    public = suppress(doc, results.k)
    results.found[doc.key] = public
    if public.withheld:
        results.withheld[doc.key] = public.withheld
    if public.not_updated:
        results.not_updated[doc.key] = public.not_updated
    if getattr(doc, "status", "ok") == "failed":
        results.failed.add(doc.key)


def _unavailable(client: DbApiClient, exc: DbApiCallError) -> DataUnavailable:
    return DataUnavailable(
        f"The data service at {client.address} did not answer ({exc.code.name}). Try again shortly."
    )


def load_results(client: DbApiClient, keys: Iterable[str], k: int) -> Results:
    """The documents with these keys (those that exist and read as results)."""
    results = Results(k)
    try:
        for key in keys:
            raw = client.get_document(PROCESSED, key)
            if raw is not None:
                _add(results, raw)
    except DbApiCallError as exc:
        raise _unavailable(client, exc) from None
    return results


def load_analyses(client: DbApiClient, analyses: Sequence[str], k: int, *, limit: int = 200) -> Results:
    """Every document whose `analysis` is one of `analyses`."""
    return _listed(client, [("analysis", "in", list(analyses))], k, limit)


def load_all(client: DbApiClient, k: int, *, limit: int = 1_000) -> Results:
    """Every document in `processed` (up to `limit`), analysis notebooks' included."""
    return _listed(client, None, k, limit)


def _listed(client: DbApiClient, filter: Any, k: int, limit: int) -> Results:
    results = Results(k)
    try:
        raws = client.list_documents(PROCESSED, filter, limit=limit)
    except DbApiCallError as exc:
        raise _unavailable(client, exc) from None
    for raw in raws:
        _add(results, raw)
    return results


def load_runs(client: DbApiClient, *, limit: int = 200) -> list[RunRecord]:
    """The newest `limit` run records, oldest first; unreadable records are left out."""
    try:
        raws = client.list_documents(RUNS, limit=limit, newest_first=True)
    except DbApiCallError as exc:
        raise _unavailable(client, exc) from None
    return sorted(load_readable(raws), key=lambda r: r.started_at)


def load_run_notebook(client: DbApiClient, run_id: str) -> str | None:
    """The notebook a run executed, from its record (None without one)."""
    try:
        raw = client.get_document(RUNS, run_id)
    except DbApiCallError as exc:
        raise _unavailable(client, exc) from None
    notebook = raw.get("notebook") if raw else None
    return notebook if isinstance(notebook, str) else None


def load_latest_finished(client: DbApiClient, notebook: str, *, limit: int = 50) -> RunRecord | None:
    """The notebook's latest run that succeeded, failed or timed out, among its newest `limit`."""
    try:
        raws = client.list_documents(RUNS, [("notebook", "eq", notebook)], limit=limit, newest_first=True)
    except DbApiCallError as exc:
        raise _unavailable(client, exc) from None
    return latest_finished(load_readable(raws), notebook)
