"""Release differencing: results are recomputed every hour, and two public figures of the same
group, before and after one late submission, would give that student's values. So a public
figure changes only when its group gained or lost at least k students since the figure last
published; otherwise the previous public figure stays, with its date.

A `Release` is the last published figures of every cell ever shown (count, sums and rows), each
with the time it was published. `hold_back` is a pure function of the previous release and this
run's cells:

1. a shown cell whose count moved by fewer than k students since its last published figure is
   held: it shows that figure again, with that date;
2. complementary holding: along every margin the changes add up like the figures do, so when
   exactly one member's change is unknown (held, hidden or never published) and it did change,
   the part with the smallest change that was updated is held too (ties by label; the total if
   no part can be), until nothing changes.
The audit then checks that every held change stays protected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from pipeline_lib.process.disclosure.cells import CellKey, Layout, Reason, RowRef
from pipeline_lib.process.results import PublicResult

# A row as it is found again in the next run: (document key, table, its group's labels).
RowKey = tuple[str, str, tuple[Any, ...]]


@dataclass(frozen=True)
class PublishedCell:
    n: float
    sums: Mapping[str, tuple[float | None, float | None]]  # variable -> (sum, sum of squares)
    published_at: dt.datetime
    rows: Mapping[RowKey, tuple[Any, ...]] = field(default_factory=dict)  # every column, as computed


@dataclass(frozen=True)
class PublishedDocument:
    """A document held whole (`disclosure.documents`) as public views last showed it."""

    n: int  # its students then (`n_input`)
    published_at: dt.datetime
    public: Mapping[str, Any]  # the public view (`results.PublicResult`) as JSON


@dataclass(frozen=True)
class Release:
    cells: Mapping[CellKey, PublishedCell] = field(default_factory=dict)
    documents: Mapping[str, PublishedDocument] = field(default_factory=dict)  # by key

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the store); `from_dict` reads it back."""
        return {
            "cells": [
                {
                    "group": sorted(([d, v] for d, v in key.group), key=lambda p: (p[0], str(p[1]))),
                    "population": key.population,
                    "n": cell.n,
                    "sums": {v: list(pair) for v, pair in cell.sums.items()},
                    "published_at": cell.published_at.isoformat(),
                    "rows": [[list(rk[:2]), list(rk[2]), list(values)] for rk, values in cell.rows.items()],
                }
                for key, cell in sorted(self.cells.items(), key=lambda item: item[0].label)
            ],
            "documents": [
                {
                    "key": key,
                    "n": doc.n,
                    "published_at": doc.published_at.isoformat(),
                    "public": dict(doc.public),
                }
                for key, doc in sorted(self.documents.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Release:
        """The release `to_dict` wrote. Anything else raises `ValueError` (a pydantic
        `ValidationError`): a release read wrong would let new figures be differenced against old."""
        stored = _StoredRelease.model_validate(data)
        cells = {
            CellKey(frozenset((d, v) for d, v in c.group), c.population): PublishedCell(
                n=c.n,
                sums=dict(c.sums),
                published_at=c.published_at,
                rows={(rk[0], rk[1], tuple(labels)): tuple(values) for rk, labels, values in c.rows},
            )
            for c in stored.cells
        }
        documents = {d.key: PublishedDocument(d.n, d.published_at, d.public) for d in stored.documents}
        return cls(cells, documents)


def _aware(value: Any) -> dt.datetime:
    """An ISO 8601 text with its time zone (as `to_dict` writes it); a number or naive time is refused."""
    if not isinstance(value, str):
        raise ValueError("a time is ISO 8601 text")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a time needs its time zone")
    return parsed


Published = Annotated[dt.datetime, BeforeValidator(_aware)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _StoredCell(BaseModel):
    group: list[tuple[str, Any]]
    population: str
    n: Number
    sums: dict[str, tuple[Number | None, Number | None]]
    published_at: Published
    rows: list[tuple[tuple[str, str], list[Any], list[Any]]]


class _StoredDocument(BaseModel):
    key: str
    n: Annotated[int, Field(strict=True, ge=0)]
    published_at: Published
    public: dict[str, Any]

    @field_validator("public")
    @classmethod
    def _a_public_result(cls, value: dict[str, Any]) -> dict[str, Any]:
        PublicResult.model_validate(value)
        return value


class _StoredRelease(BaseModel):
    cells: list[_StoredCell]  # required: a release without it is not one that published nothing
    documents: list[_StoredDocument] = []  # releases written before documents were held have none


@dataclass(frozen=True)
class HoldBack:
    held: frozenset[CellKey]  # cells that show their previous figures
    release: Release  # what is published now: the next run's `previous`


def row_key(ref: RowRef, labels: tuple[Any, ...]) -> RowKey:
    return (ref.key, ref.table, labels)


def hold_back(
    previous: Release | None,
    layout: Layout,
    hidden: Mapping[CellKey, Reason],
    *,
    k: int,
    now: dt.datetime,
    rows: Mapping[RowRef, tuple[RowKey, tuple[Any, ...]]] | None = None,
    also_held: set[CellKey] | frozenset[CellKey] = frozenset(),
) -> HoldBack:
    """Which shown cells keep their previous figures, and the release this run makes. `rows`
    gives each row's key and values, kept in the release so a held row can be shown again;
    `also_held` are cells the audit asks to hold besides."""
    before = previous.cells if previous is not None else {}
    shown = [
        c
        for c, cell in sorted(layout.cells.items(), key=lambda i: i[0].label)
        if cell.modelled and not cell.fixed and c not in hidden
    ]
    held = {c for c in shown if c in before and abs(layout.cells[c].n - before[c].n) < k}
    held |= {c for c in also_held if c in before and c not in hidden}  # asked for by the audit

    def unknown(key: CellKey) -> bool:
        if layout.cells[key].fixed:
            return False  # published this run, whatever the tables show
        return key in held or key in hidden or key not in before

    def changed(key: CellKey) -> bool:
        cell, old = layout.cells[key], before[key]
        sums = {v: (s, q) for v, (_, s, q) in cell.sums.items()}
        return cell.n != old.n or any(sums.get(v) != pair for v, pair in old.sums.items())

    growing = True
    while growing:
        growing = False
        for margin in layout.margins:
            members = [margin.total, *margin.parts]
            blind = [m for m in members if unknown(m)]
            if len(blind) != 1 or blind[0] not in held or not changed(blind[0]):
                continue
            updated = [p for p in margin.parts if not unknown(p) and layout.cells[p].modelled]
            change = {p: abs(layout.cells[p].n - before[p].n) for p in updated}
            pick = min(updated, key=lambda p: (change[p], p.label)) if updated else margin.total
            if pick in held or pick in hidden or pick not in before:
                continue  # the total cannot be held: the audit will say so
            held.add(pick)
            growing = True
    cells = dict(before)
    for key in shown:
        if key not in held:
            cells[key] = _published(layout, key, now, rows or {})
    documents = previous.documents if previous is not None else {}
    return HoldBack(frozenset(held), Release(cells, documents))


def _published(
    layout: Layout, key: CellKey, now: dt.datetime, rows: Mapping[RowRef, tuple[RowKey, tuple[Any, ...]]]
) -> PublishedCell:
    cell = layout.cells[key]
    return PublishedCell(
        n=cell.n,
        sums={v: (s, q) for v, (_, s, q) in cell.sums.items()},
        published_at=now,
        rows=dict(rows[r] for r in cell.rows if r in rows),
    )
