"""The collections of the pipeline, by name: one registry that the db-api serves and its clients
name. A fixed list keeps typos from silently creating new collections."""

from __future__ import annotations

RAW = "raw"
CLEANED = "cleaned"
QUARANTINE = "quarantine"
PROCESSED = "processed"
SCHOOLS = "schools"
RUNS = "runs"
USERS = "users"
# The last public release of the results, which the disclosure control differences the next run
# against: analyst-only, never served as a result or a run.
RELEASES = "releases"
# The latest snapshot of each dashboard (HTML, as the public sees it), by dashboard name: what the
# web app serves under /dashboards/<name>, rendered after each processing run.
DASHBOARDS = "dashboards"
# Receipts (id and receipt metadata, no answers) of raw records the clean merged into another
# record as resubmissions: they have no record of their own, yet their ids were received. Kept by
# the store's CommitClean, read by the form's receipt page.
RECEIPTS = "receipts"

COLLECTIONS = frozenset(
    {RAW, CLEANED, QUARANTINE, PROCESSED, SCHOOLS, RUNS, USERS, RELEASES, DASHBOARDS, RECEIPTS}
)

# `raw` holds what submitters typed: it is scanned as text so cleaning sees the input as given.
TEXT_COLLECTIONS = frozenset({RAW})

# Where a document lives on under the same id once a step has moved it, first home first: a raw
# record, once cleaned, is in `cleaned` or `quarantine`, or has a receipt if it was merged into
# another record. Inserts into `raw` look there too, so an id once received is never received
# again: a form page resent, an Idempotency-Key reused or an upload sent again after a clean is
# "already stored", and never replaces the record cleaned from it.
LATER_HOMES: dict[str, tuple[str, ...]] = {RAW: (CLEANED, QUARANTINE, RECEIPTS)}
