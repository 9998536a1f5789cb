"""Disclosure control of public results: primary and complementary suppression, held-back
figures between releases, and an audit by linear programming that proves no hidden figure can
be narrowed down from what is published. Pure functions of result documents: no I/O, no Spark.

`protect(documents, ...)` is the one call a process run needs; the modules hold the rules:
`margins` (which rows add up to which), `suppression`, `releases`, `audit` (with its solver in
`program`), `bins`. docs/privacy.md explains the rules, the settings and what is and is not
protected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_lib.process.disclosure import audit as auditing
from pipeline_lib.process.disclosure.audit import AuditFailure, AuditReport, Interval
from pipeline_lib.process.disclosure.cells import CellKey, Layout, Reason, RowRef
from pipeline_lib.process.disclosure.margins import extract, is_quantile
from pipeline_lib.process.disclosure.releases import HoldBack, PublishedCell, Release, RowKey, hold_back
from pipeline_lib.process.disclosure.suppression import complementary, primary, quantiles_hidden, widen
from pipeline_lib.process.results import ResultDocument

__all__ = [
    "AuditFailure",
    "AuditReport",
    "CellKey",
    "Interval",
    "Protection",
    "PublishedCell",
    "Reason",
    "Release",
    "RowRef",
    "protect",
]

MAX_ROUNDS = 50  # audit rounds before the remaining failures stand (fail closed)


@dataclass(frozen=True)
class Protection:
    """What a run may publish: hidden cells with their reasons, rows whose quantiles are hidden,
    cells held at their previous figures, the release to keep for the next run, and the audit."""

    layout: Layout
    hidden: Mapping[CellKey, Reason]
    quantile_rows: frozenset[RowRef]
    held: frozenset[CellKey]
    release: Release
    audit: AuditReport
    row_keys: Mapping[RowRef, RowKey]

    def row_reasons(self) -> dict[RowRef, Reason]:
        """Per hidden row, why: `small` or `complementary`."""
        return {ref: self.hidden[key] for ref, key in self.layout.row_cells.items() if key in self.hidden}

    def held_rows(self) -> dict[RowRef, tuple[tuple[Any, ...] | None, dt.datetime]]:
        """Per row of a held cell: the values it last published (None if that row was not
        published then: show it hidden) and when."""
        found = {}
        for ref, key in self.layout.row_cells.items():
            if key in self.held:
                cell = self.release.cells[key]
                found[ref] = (cell.rows.get(self.row_keys[ref]), cell.published_at)
        return found

    def withheld(self) -> dict[str, list[str]]:
        """Documents that must not be published because the audit failed, with the reasons: each
        holds a failing cell or a cell that shares a margin with one."""
        reasons: dict[str, list[str]] = {}
        for failure in self.audit.failures:
            near = {failure.cell}
            for margin in self.layout.margins:
                if failure.cell == margin.total or failure.cell in margin.parts:
                    near |= {margin.total, *margin.parts}
            for ref, key in sorted(self.layout.row_cells.items()):
                if key in near and failure.reason not in reasons.setdefault(ref.key, []):
                    reasons[ref.key].append(failure.reason)
        return reasons


def row_values(
    documents: Iterable[ResultDocument], quantiles_hidden: Collection[RowRef] = frozenset()
) -> dict[RowRef, tuple[RowKey, tuple[Any, ...]]]:
    """Every public row's key across releases (document, table, labels) and values as published:
    quantiles blanked in `quantiles_hidden` (a held row must not show them later)."""
    found = {}
    for doc in documents:
        for table in doc.tables:
            labels = [table.columns.index(c) for c in table.label_columns]
            for i, row in enumerate(table.rows):
                ref = RowRef(doc.key, table.name, i)
                key = (doc.key, table.name, tuple(row[j] for j in labels))
                values = tuple(
                    None if ref in quantiles_hidden and is_quantile(c) else v
                    for c, v in zip(table.columns, row, strict=True)
                )
                found[ref] = (key, values)
    return found


def protect(
    documents: Iterable[ResultDocument],
    *,
    k: int,
    k_quantiles: int | None = None,
    ratio: float = 0.5,
    previous: Release | None = None,
    now: dt.datetime | None = None,
) -> Protection:
    """Suppression, held-back figures and the audit for one run's public documents (the rules
    are in `suppression`, `releases` and `audit`)."""
    docs = list(documents)
    layout = extract(docs)
    quantile_rows = quantiles_hidden(layout, k_quantiles or 2 * k)
    rows = row_values(docs, quantile_rows)
    stamp = now or max((d.computed_at for d in docs), default=dt.datetime.now(dt.UTC))
    hidden = complementary(layout, primary(layout, k), k)
    extra_held: set[CellKey] = set()
    solved: dict = {}
    report, recheck = None, None
    for _ in range(MAX_ROUNDS):
        kept = hold_back(previous, layout, hidden, k=k, now=stamp, rows=rows, also_held=extra_held)
        found = auditing.audit(
            layout, hidden, k=k, ratio=ratio, previous=previous, held=kept.held, solved=solved, only=recheck
        )
        # Hiding or holding more only widens intervals: a cell that passed stays passed.
        report = found if report is None or recheck is None else report.updated(found, recheck)
        if report.passed:
            break
        recheck = {f.cell for f in report.failures}
        grown = False
        for failure in report.failures:
            if failure.cell in kept.held and failure.cell not in hidden:
                more = _hold_more(layout, failure.cell, kept, hidden, previous)
                if more is not None and more not in extra_held:
                    extra_held.add(more)
                    grown = True
                    continue
                # Nothing beside it can be held (its parts are first published now, so this
                # run's figure of the held cell adds up from them): hide one of them instead.
            pick = widen(layout, failure.cell, hidden, k)
            if pick is not None:
                hidden = complementary(layout, {**hidden, pick: "complementary"}, k)
                grown = True
        if not grown:
            break
    assert report is not None
    return Protection(
        layout=layout,
        hidden=hidden,
        quantile_rows=quantile_rows,
        held=kept.held,
        release=kept.release,
        audit=report,
        row_keys={ref: key for ref, (key, _) in rows.items()},
    )


def _hold_more(
    layout: Layout,
    failing: CellKey,
    kept: HoldBack,
    hidden: Mapping[CellKey, Reason],
    previous: Release | None,
) -> CellKey | None:
    """An updated cell sharing a margin with `failing`, with the smallest change, to hold too."""
    if previous is None:
        return None
    candidates = sorted(
        {
            member
            for margin in layout.margins
            if failing == margin.total or failing in margin.parts
            for member in (margin.total, *margin.parts)
            if member not in kept.held and member not in hidden and member in previous.cells
        },
        key=lambda c: (abs(layout.cells[c].n - previous.cells[c].n), c.label),
    )
    return candidates[0] if candidates else None
