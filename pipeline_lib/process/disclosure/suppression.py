"""Primary and complementary suppression of cells.

Primary: a cell of fewer than `k` students is hidden (reason `small`; an unreadable count counts
as small: fail closed); a shown cell of fewer than `k_quantiles` students hides its quantiles
(q1, median, q3 and any percentile: in a group of five they are three of its five values). Min
and max are never public: tables list them as analyst-only columns.

Complementary (reason `complementary`), deterministic:
1. in every margin (a total and its parts) with exactly one hidden member, hide one more part:
   the smallest with at least 2k-1 students (so a small cell's count keeps its whole range
   1..k-1 beside it), else the smallest; ties by label; the total if no part is left;
2. repeat until no margin changes;
3. audit (see `audit`); for each failing cell hide the cheapest part by the same order in any
   margin it belongs to, then go back to 1, until the audit passes or nothing is left to hide
   (the failures then stand, and the documents holding them are withheld).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from pipeline_lib.process.disclosure.cells import CellKey, Layout, Margin, Reason, RowRef


def primary(layout: Layout, k: int) -> dict[CellKey, Reason]:
    """Cells of fewer than k students (or of an unreadable count)."""
    return {
        key: "small"
        for key, cell in layout.cells.items()
        if not cell.fixed and (math.isnan(cell.n) or cell.n < k)
    }


def quantiles_hidden(layout: Layout, k_quantiles: int) -> frozenset[RowRef]:
    """Rows whose quantiles stay hidden: their group has fewer than `k_quantiles` students."""
    return frozenset(
        ref
        for cell in layout.cells.values()
        if math.isnan(cell.n) or cell.n < k_quantiles
        for ref in cell.quantile_rows
    )


def _order(layout: Layout, k: int) -> Callable[[CellKey], tuple]:
    def cost(key: CellKey) -> tuple:
        n = layout.cells[key].n
        return (n < 2 * k - 1, n, key.label)

    return cost


def _cheapest(layout: Layout, margin: Margin, hidden: Mapping[CellKey, Reason], k: int) -> CellKey | None:
    candidates = [p for p in margin.parts if p not in hidden and layout.cells[p].modelled]
    if candidates:
        return min(candidates, key=_order(layout, k))
    # Everyone's count is in every document (n_input): hiding it protects nothing.
    return None if margin.total in hidden or not margin.total.group else margin.total


def complementary(layout: Layout, hidden: Mapping[CellKey, Reason], k: int) -> dict[CellKey, Reason]:
    """`hidden` plus cells hidden by steps 1-2 (module docstring)."""
    result = dict(hidden)
    growing = True
    while growing:
        growing = False
        for margin in layout.margins:
            members = [margin.total, *margin.parts]
            if sum(m in result for m in members) != 1:
                continue
            pick = _cheapest(layout, margin, result, k)
            if pick is not None:
                result[pick] = "complementary"
                growing = True
    return result


def widen(layout: Layout, failing: CellKey, hidden: Mapping[CellKey, Reason], k: int) -> CellKey | None:
    """Step 3: the cheapest cell not yet hidden in any margin `failing` belongs to."""
    picks = [
        pick
        for margin in layout.margins
        if failing == margin.total or failing in margin.parts
        if (pick := _cheapest(layout, margin, hidden, k)) is not None
    ]
    return min(picks, key=_order(layout, k)) if picks else None
