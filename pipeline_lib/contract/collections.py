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

COLLECTIONS = frozenset({RAW, CLEANED, QUARANTINE, PROCESSED, SCHOOLS, RUNS, USERS, RELEASES, DASHBOARDS})

# `raw` holds what submitters typed: it is scanned as text so cleaning sees the input as given.
TEXT_COLLECTIONS = frozenset({RAW})

# Where a document lives on under the same id once a step has moved it: a raw record, once
# cleaned, is in `cleaned` or `quarantine`. Inserts into `raw` look there too, so an id once
# received is never received again: a form page resent, an Idempotency-Key reused or an upload
# sent again after a clean is "already stored", and never replaces the record cleaned from it.
LATER_HOMES: dict[str, tuple[str, ...]] = {RAW: (CLEANED, QUARANTINE)}
