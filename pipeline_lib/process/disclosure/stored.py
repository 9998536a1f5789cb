"""What a process run stores of a `Protection` with each document: the per-row reasons, quantile
rows, held rows and the withholding that public views apply (`results.suppress`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from pipeline_lib.process.disclosure import Protection, Release
from pipeline_lib.process.disclosure.margins import is_quantile
from pipeline_lib.process.results import DocumentProtection, HeldRow, ResultDocument, TableProtection


def annotate(documents: Sequence[ResultDocument], protection: Protection, *, k: int) -> list[ResultDocument]:
    """`documents` with their `protection` field set from the run's `protection`."""
    tables: dict[tuple[str, str], TableProtection] = {}

    def guard(key: str, table: str) -> TableProtection:
        return tables.setdefault((key, table), TableProtection())

    for ref, reason in protection.row_reasons().items():
        guard(ref.key, ref.table).hidden[ref.row] = reason
    for ref in sorted(protection.quantile_rows):
        guard(ref.key, ref.table).quantile_rows.append(ref.row)
    # Every held row carries its date, changed or not: notes on the changed rows alone would point
    # at the groups a late student joined.
    for ref, (values, published_at) in protection.held_rows().items():
        held = HeldRow(values=list(values) if values is not None else None, published_at=published_at)
        guard(ref.key, ref.table).held[ref.row] = held
    withheld = protection.withheld()
    found = []
    for doc in documents:
        own = {}
        for table in doc.tables:
            columns = [c for c in table.columns if is_quantile(c)]
            if (doc.key, table.name) in tables or columns:
                own[table.name] = guard(doc.key, table.name).model_copy(update={"quantile_columns": columns})
        record = DocumentProtection(k=k, tables=own, withheld=withheld.get(doc.key, []))
        found.append(doc.model_copy(update={"protection": record}))
    return found


def public_release(release: Release, withheld: Collection[str]) -> Release:
    """`release` without the rows of withheld documents: the public never saw them, so a later
    run holding their cells shows those rows hidden, not figures that were never published."""
    cells = {
        key: dataclasses.replace(cell, rows={r: v for r, v in cell.rows.items() if r[0] not in withheld})
        for key, cell in release.cells.items()
    }
    return dataclasses.replace(release, cells=cells)
