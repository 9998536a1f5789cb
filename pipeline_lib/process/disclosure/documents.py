"""Whole documents held between releases. A model's coefficients, a correlation or a fit statistic
is a function of every student's values, not a sum the audit can reason about: the null model's
grand mean times its `n_students`, before and after one late submission, is that student's score.
So such a document changes in public views only when its students (`n_input`) moved by at least
k since it last published; until then public views show it exactly as they showed it then, with
that date (`results.suppress`).

Only the tables the layout models cell by cell (`margins`) are held per cell, by
`releases.hold_back`; every other analysis, a new one an analyst adds included, is held whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterable

from pipeline_lib.process.disclosure.releases import PublishedDocument, Release
from pipeline_lib.process.results import (
    DocumentProtection,
    HeldDocument,
    PublicResult,
    ResultDocument,
    suppress,
)

# Analyses whose every public figure is a count, sum or quantile of a group the layout models.
PER_CELL = frozenset({"descriptives", "distribution", "relation"})


def held_whole(doc: ResultDocument) -> bool:
    return doc.analysis not in PER_CELL


@dataclasses.dataclass(frozen=True)
class DocumentHolding:
    documents: list[ResultDocument]  # with `protection.held` set on the held ones
    held: frozenset[str]  # their keys
    release: Release  # with the documents published now


def hold_documents(
    documents: Iterable[ResultDocument],
    release: Release,
    previous: Release | None,
    *,
    k: int,
    now: dt.datetime,
) -> DocumentHolding:
    """Hold each whole document whose students moved by fewer than k since it last published;
    keep the public view of the others in `release` for the next run. `documents` carry their
    `protection` already (their public view is what `suppress` shows)."""
    before = previous.documents if previous is not None else {}
    kept = dict(before)
    found, held = [], set()
    for doc in documents:
        old = before.get(doc.key) if held_whole(doc) else None
        if old is not None and doc.status == "ok" and abs(doc.n_input - old.n) < k:
            record = HeldDocument(
                public=PublicResult.model_validate(old.public), published_at=old.published_at
            )
            protection = doc.protection or DocumentProtection(k=k)
            found.append(
                doc.model_copy(update={"protection": protection.model_copy(update={"held": record})})
            )
            held.add(doc.key)
            continue
        found.append(doc)
        if held_whole(doc) and _has_figures(shown := suppress(doc, k)):
            kept[doc.key] = PublishedDocument(doc.n_input, now, shown.model_dump(mode="json"))
        # A failed, withheld or small document shows no figures: the release keeps the last ones
        # that were shown, for the next run to difference against.
    return DocumentHolding(found, frozenset(held), dataclasses.replace(release, documents=kept))


def _has_figures(shown: PublicResult) -> bool:
    return shown.status == "ok" and shown.withheld is None and shown.n_input is not None


def drop_rows(release: Release, documents: Collection[str], *, now: dt.datetime) -> Release:
    """`release` without the rows of `documents` in the cells it publishes `now`: public views show
    those documents as published earlier, so their rows of this run were never seen (a later run
    holding such a cell shows the row hidden rather than figures that were never published)."""
    cells = {
        key: dataclasses.replace(cell, rows={r: v for r, v in cell.rows.items() if r[0] not in documents})
        if cell.published_at == now
        else cell
        for key, cell in release.cells.items()
    }
    return dataclasses.replace(release, cells=cells)
