"""The published release between process runs: read first (fail closed), and made anew by each
run's disclosure control (docs/privacy.md). It is kept, analyst-only, in `releases` under
`RELEASE_ID` for the next run to difference against."""

from __future__ import annotations

import datetime as dt
import logging

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import RELEASES
from pipeline_lib.process.disclosure import Release, protect
from pipeline_lib.process.disclosure.bins import with_empty_bins
from pipeline_lib.process.disclosure.documents import drop_rows, hold_documents
from pipeline_lib.process.disclosure.stored import annotate, public_release
from pipeline_lib.process.publication import UnreadableRelease, pending_release
from pipeline_lib.process.report import ProcessReport
from pipeline_lib.settings import get_settings

log = logging.getLogger(__name__)

# The published release (what public views showed, and when), in its own collection `releases`:
# analyst-only; not in `processed` (result listings stay results) nor in `runs` (run records only).
RELEASE_ID = "disclosure-release"
__all__ = ["RELEASE_ID", "UnreadableRelease", "previous_release", "protect_run"]


def previous_release(client: DbApiClient) -> Release | None:
    """The release the previous run published, if any. One that cannot be read stops the run before
    anything is written (fail closed): without it, new figures could be differenced against the
    ones the public already saw. Public views keep showing the previous results meanwhile."""
    # A publication committed but not finished counts: the public is going to see it (`publication`).
    raw = pending_release(client, RELEASE_ID) or client.get_document(RELEASES, RELEASE_ID)
    if raw is None:
        return None
    try:
        return Release.from_dict(raw)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UnreadableRelease(
            f"the published release (collection {RELEASES!r}, document {RELEASE_ID!r}) cannot be read "
            f"({type(exc).__name__}: {exc}); nothing was written. Restore it, or remove it with "
            f"`workbench release reset` to start a new release (earlier public figures can then be "
            f"differenced against the new ones)"
        ) from exc


def protect_run(
    previous: Release | None,
    report: ProcessReport,
    *,
    k: int,
    k_quantiles: int | None,
    ratio: float | None,
    now: dt.datetime,
) -> Release:
    """Set each document's protection (bins completed first), and the audit's findings on the
    report; the release to keep for the next run."""
    settings = get_settings()
    quantile_min = k_quantiles or settings.k_quantiles or 2 * k
    documents = [with_empty_bins(d) for d in [*report.documents, *report.dashboard_documents]]
    protection = protect(
        documents,
        k=k,
        k_quantiles=max(quantile_min, k),
        ratio=ratio if ratio is not None else settings.protection_ratio,
        previous=previous,
        now=now,
    )
    holding = hold_documents(annotate(documents, protection, k=k), protection.release, previous, k=k, now=now)
    analyses = {d.key for d in report.documents}
    report.documents = [d for d in holding.documents if d.key in analyses]
    report.dashboard_documents = [d for d in holding.documents if d.key not in analyses]
    report.audit_seconds = protection.audit.seconds
    report.audit_failures = [f.reason for f in protection.audit.failures]
    report.withheld = protection.withheld()
    if report.withheld:
        log.warning(
            "documents withheld from public views: the disclosure audit failed",
            extra={"run_id": report.run_id, "withheld": sorted(report.withheld)},
        )
    return drop_rows(public_release(holding.release, report.withheld), holding.held, now=now)
