"""Reading results for the API and the pages: the documents in `processed`, how old each one's
figures are (by the schedule and the runs of its notebook), and the warnings a reader gets."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from pipeline_lib.process.results import ResultDocument
from pipeline_lib.runs import schedule
from pipeline_lib.runs.freshness import Freshness, assess, failed_run_warning, latest_finished, notebook_of
from pipeline_lib.runs.records import RunRecord
from pipeline_lib.settings import Settings
from web_app.deps import DbDep
from web_app.routes.runs import list_runs
from web_app.security import TokenClaims

log = logging.getLogger(__name__)
KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"


class Unreadable(Exception):
    """A stored result document that does not validate: shown as missing, never half-read."""


async def read_documents(db: DbDep) -> list[ResultDocument]:
    """Every well-formed result document (a malformed one is skipped, not fatal to the page)."""
    docs = []
    for raw in await db.list_documents("processed", limit=10_000):
        try:
            docs.append(ResultDocument.model_validate(raw))
        except ValidationError:
            continue
    return sorted(docs, key=lambda d: d.key)


async def read_document(db: DbDep, key: str) -> ResultDocument | None:
    """The result document of `key`; None if there is none; `Unreadable` if it does not validate."""
    raw = await db.get_document("processed", key)
    if raw is None:
        return None
    try:
        return ResultDocument.model_validate(raw)
    except ValidationError:
        raise Unreadable(key) from None


def is_analyst(user: TokenClaims) -> bool:
    return bool({"analyst", "admin"} & user.scopes)


@functools.lru_cache(maxsize=4)
def _parsed_schedule(path: str, mtime_ns: int, size: int) -> tuple[schedule.Job, ...]:
    return tuple(schedule.load(Path(path)))


def schedule_jobs(path: Path) -> Sequence[schedule.Job]:
    """The schedule's jobs, parsed again only when the file changes. A schedule that cannot be
    read sets no limit (and says so in the log): it must not take the results down with it."""
    try:
        stat = path.stat()
        return _parsed_schedule(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, schedule.ScheduleError) as exc:
        log.warning("schedule unreadable; figures get no staleness limit from it", extra={"error": str(exc)})
        return ()


async def _notebook(db: DbDep, run_id: str) -> str | None:
    """The notebook of a run: from its id if it has the usual form, else from its record."""
    if found := notebook_of(run_id):
        return found
    raw = await db.get_document("runs", run_id)
    return raw.get("notebook") if raw and isinstance(raw.get("notebook"), str) else None


async def freshness(
    db: DbDep, settings: Settings, documents: Sequence[ResultDocument], *, details: bool
) -> dict[str, Freshness]:
    """Each document's freshness by key; runs are read once per producing run and notebook."""
    jobs, now = schedule_jobs(settings.schedule_file), dt.datetime.now(dt.UTC)
    notebooks: dict[str, str | None] = {}
    latest: dict[str, RunRecord | None] = {}
    found = {}
    for doc in documents:
        if doc.run_id not in notebooks:
            notebooks[doc.run_id] = await _notebook(db, doc.run_id)
        notebook = notebooks[doc.run_id]
        if notebook is not None and notebook not in latest:
            latest[notebook] = latest_finished(await list_runs(db, notebook, limit=50), notebook)
        found[doc.key] = assess(
            computed_at=doc.computed_at,
            run_id=doc.run_id,
            notebook=notebook,
            latest_run=latest.get(notebook) if notebook else None,
            jobs=jobs,
            stale_after=settings.stale_after,
            now=now,
            details=details,
        )
    return found


async def _failed_latest_runs(db: DbDep) -> list[RunRecord]:
    """Each notebook's latest finished run (skipped ones aside), where it failed or timed out."""
    latest: dict[str, RunRecord] = {}
    for run in await list_runs(db, limit=200):
        if run.status in ("succeeded", "failed", "timed_out"):
            latest.setdefault(run.notebook, run)
    return [run for run in latest.values() if run.status != "succeeded"]


@dataclass(frozen=True)
class Status:
    """What a page says above the figures: how old they are, and one block of warnings."""

    headline: Freshness | None
    warnings: list[str]
    failed_run_ids: list[str]


async def page_status(db: DbDep, headline: Freshness | None, *, analyst: bool) -> Status:
    """The headline figures' own warnings (stale, or their notebook's latest run failed), then any
    other notebook whose latest run failed (a failed clean leaves new data out of every figure)."""
    others = [r for r in await _failed_latest_runs(db) if headline is None or r.notebook != headline.notebook]
    warnings = [
        *(headline.warnings if headline else []),
        *(failed_run_warning(r, details=analyst) for r in others),
    ]
    failed_ids = [r.run_id for r in others]
    if headline and headline.latest_run_failed and headline.latest_run_id:
        failed_ids.insert(0, headline.latest_run_id)
    return Status(headline, warnings, failed_ids)
