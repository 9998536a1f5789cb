"""The small model disclosure control works on: cells, the quantities they publish, and the
additive margins that tie cells together.

A *cell* is one group of students counted in one population (`students` for everyone, or the
students with a value of an optional field). Every public row that shows the cell's size belongs
to it: the overall descriptives row of `math_score`, the `ses` row of the same group and the
histogram's total all describe the same students, so they are shown or hidden together. A cell
publishes *quantities*: its count `n`, and per variable the sum `s = n*mean` and the sum of
squares `q = (n-1)*sd**2 + n*mean**2`. Margins say that a total cell is the sum of its parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Reason = Literal["small", "complementary"]
# A group: the labels that select its students, e.g. {("sector", "public"), ("school_id", "S1")}.
Group = frozenset[tuple[str, Any]]
STUDENTS = "students"  # the population of the required fields: every student of the group


@dataclass(frozen=True, order=True)
class RowRef:
    """One row of one table of one document."""

    key: str
    table: str
    row: int


@dataclass(frozen=True)
class CellKey:
    group: Group
    population: str

    @property
    def label(self) -> str:
        """Readable and sortable: `school_id=S0001, sector=public [students]`."""
        parts = ", ".join(f"{d}={v}" for d, v in sorted(self.group, key=lambda p: (p[0], str(p[1]))))
        return f"{parts or 'everyone'} [{self.population}]"


@dataclass(frozen=True)
class Quantity:
    """An additive figure of a cell: `n`, or `s`/`q` (sum, sum of squares) of `variable`."""

    kind: Literal["n", "s", "q"]
    cell: CellKey
    variable: str = ""

    @property
    def label(self) -> str:
        what = f"{self.kind}({self.variable})" if self.variable else "n"
        return f"{what} of {self.cell.label}"


@dataclass
class Cell:
    key: CellKey
    n: float  # the true count (NaN when unreadable: then the cell counts as small)
    rows: list[RowRef] = field(default_factory=list)
    # variable -> (value range of one student, true sum, true sum of squares); a None figure is
    # one no row publishes (a histogram bin's sum), which the audit treats as unknown.
    sums: dict[str, tuple[tuple[float, float], float | None, float | None]] = field(default_factory=dict)
    quantile_rows: list[RowRef] = field(default_factory=list)  # rows that show quantiles
    modelled: bool = True  # False: a row outside every margin (suppressed on its own size)
    may_be_empty: bool = False  # its table lists empty groups too: a hidden row may hold none
    fixed: bool = False  # published outside the tables (a document's parameters): never hidden or held


@dataclass(frozen=True)
class Margin:
    """`total` is the sum of `parts` (disjoint groups of the same population); when not
    `exhaustive` the parts cover only some of the total's students (counts: sum <= total)."""

    total: CellKey
    parts: tuple[CellKey, ...]
    exhaustive: bool


@dataclass
class Layout:
    cells: dict[CellKey, Cell]
    margins: list[Margin]
    # (narrower, wider): the same group counted in an optional field's population and in all
    # of its students (n_narrower <= n_wider).
    nested: list[tuple[CellKey, CellKey]]
    row_cells: Mapping[RowRef, CellKey]
