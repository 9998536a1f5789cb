"""Binned tables with every bin listed. A table that leaves out empty bins proves, by showing a
hidden bin's label, that someone scored in that range; listing every bin of the fixed range (empty
ones with n = 0, hidden like any small group) makes a hidden bin read "0 to k-1 students"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline_lib.process.analysis.distributions import HISTOGRAM_BINS, RELATION_BINS, Bins
from pipeline_lib.process.results import ResultDocument, ResultTable

# table name -> (column of the lower edge, the bins); the histogram's bins depend on its variable.
_BINNED = {"histogram": "lower", "binned": "ses_lower"}


def bins_of(doc: ResultDocument, table: ResultTable) -> Bins | None:
    if table.name == "histogram" and doc.analysis == "distribution":
        return HISTOGRAM_BINS.get(doc.scope)
    if table.name == "binned" and doc.analysis == "relation":
        return RELATION_BINS
    return None


def is_complete(doc: ResultDocument, table: ResultTable) -> bool:
    """Every bin of the range is a row, for each group the table breaks bins down by."""
    bins = bins_of(doc, table)
    if bins is None:
        return False
    edge = table.columns.index(_BINNED[table.name])
    others = [table.columns.index(c) for c in table.label_columns if c not in ("bin", "lower", "upper")]
    others = [i for i in others if i != edge and table.columns[i] != "ses_upper"]
    seen: dict[tuple[Any, ...], set[float]] = {}
    for row in table.rows:
        seen.setdefault(tuple(row[i] for i in others), set()).add(row[edge])
    return bool(seen) and all(len(edges) == bins.count for edges in seen.values())


def with_empty_bins(doc: ResultDocument) -> ResultDocument:
    """`doc` with the empty bins of its binned tables added as rows of n = 0 (other figures
    None), in bin order; other documents unchanged."""
    tables = [_complete(doc, t) for t in doc.tables]
    return doc.model_copy(update={"tables": tables})


def _complete(doc: ResultDocument, table: ResultTable) -> ResultTable:
    bins = bins_of(doc, table)
    if bins is None:
        return table
    edge = table.columns.index(_BINNED[table.name])
    group = table.columns.index("sector") if "sector" in table.columns else None
    groups = sorted({row[group] for row in table.rows}) if group is not None else [None]
    present = {(row[group] if group is not None else None, row[edge]): row for row in table.rows}
    rows = []
    for g in groups:
        for i in range(bins.count):
            low, high = bins.edges(i)
            rows.append(present.get((g, low)) or _empty(table.columns, g, i, low, high, bins))
    return table.model_copy(update={"rows": rows})


def _empty(columns: list[str], group: Any, index: int, low: float, high: float, bins: Bins) -> list[Any]:
    values: Mapping[str, Any] = {
        "sector": group,
        "bin": bins.label(index) if "lower" in columns else index,
        "lower": low,
        "upper": high,
        "ses_lower": low,
        "ses_upper": high,
        "n": 0,
    }
    return [values.get(c) for c in columns]
