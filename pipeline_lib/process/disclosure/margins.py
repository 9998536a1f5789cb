"""From result documents to cells and margins (read-only): which rows describe which group of
students, and which groups add up to which.

Recognised tables, by their columns: descriptives (`variable`, `n`, `mean`, `sd`, ...), mean
tables (`n`, `mean` of `math_score`), histograms (`lower`, `upper`, `n` of one variable),
students per school, the SES-math relation (`n`, `mean_ses`, `mean_math`, per sector and SES
bin), the per-school rows of model documents (`school_id`, `n`) and model terms of one category
(`sector[catholic]`, whose `n` is that group's count or its reference's). Any other row with a group
size becomes a cell of its own, suppressed on its own size but outside every margin.

Margins are found, not listed: a cell with groups G is the total of the cells whose group is G
plus one more dimension (a school also carries its sector, so schools add up to their sector
and to everyone). A margin counts as exhaustive when its parts' true counts add up to the
total's: an attacker who knows the data contract (sex is required, ...) knows that too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pipeline_lib.contract.fields import FIELDS_BY_NAME
from pipeline_lib.process.analysis.frame import REFERENCE
from pipeline_lib.process.disclosure.bins import is_complete
from pipeline_lib.process.disclosure.cells import (
    STUDENTS,
    Cell,
    CellKey,
    Group,
    Layout,
    Margin,
    RowRef,
)
from pipeline_lib.process.results import ResultDocument, ResultTable

# A dimension that implies others: a school lies in one sector.
IMPLIES = {"school_id": ("sector",)}
QUANTILE_COLUMNS = frozenset({"q1", "median", "q3"})
# Columns that name a group but do not select students.
NOT_DIMENSIONS = frozenset({"name", "variable", "bin", "upper", "ses_upper"})
_MEAN_COLUMNS = {"mean_ses": "ses", "mean_math": "math_score"}


def population(variable: str) -> str:
    """Students with a value of `variable`: all of them for a required field."""
    spec = FIELDS_BY_NAME.get(variable)
    return STUDENTS if spec is None or spec.required else variable


def value_range(variable: str) -> tuple[float, float]:
    spec = FIELDS_BY_NAME[variable]
    return float(spec.minimum), float(spec.maximum)  # type: ignore[arg-type]


def is_quantile(column: str) -> bool:
    """q1, median, q3 and any percentile column (p10, p90, percentile_5, ...)."""
    return (
        column in QUANTILE_COLUMNS
        or column.startswith("percentile")
        or (len(column) > 1 and column[0] in "pq" and column[1:].isdigit())
    )


def extract(documents: Iterable[ResultDocument]) -> Layout:
    """Cells, margins and nesting of every public table of `documents`."""
    cells: dict[CellKey, Cell] = {}
    row_cells: dict[RowRef, CellKey] = {}
    docs = list(documents)
    sectors = _school_sectors(docs)
    terms: list[tuple[RowRef, dict[str, Any]]] = []
    for doc in docs:
        for table in doc.tables:
            if table.audience != "public" or not table.group_size_column:
                continue
            complete = is_complete(doc, table)
            for index, row in enumerate(table.rows):
                ref = RowRef(doc.key, table.name, index)
                values = dict(zip(table.columns, row, strict=True))
                if "term" in values and doc.sample_size is None:
                    terms.append((ref, values))  # linked once every group's cell is known
                    continue
                key = _add_row(cells, doc, table, ref, values, sectors)
                # A listed group has students, but maybe none with a value of an optional field.
                cells[key].may_be_empty |= complete or key.population != STUDENTS
                row_cells[ref] = key
    for ref, values in terms:
        row_cells[ref] = _link_term(cells, ref, values)
    for doc in docs:
        if any(_is_calibration(t) and t.audience == "public" for t in doc.tables):
            _add_model_total(cells, doc)
    return Layout(cells=cells, margins=_margins(cells), nested=_nested(cells), row_cells=row_cells)


def _is_calibration(table: ResultTable) -> bool:
    return table.name == "calibration" and {"lower", "upper", "observed_rate"} <= set(table.columns)


def _modelled(doc: ResultDocument) -> str:
    """The population of a model's students (those its calibration bins count)."""
    return f"model:{doc.key}"


def _add_model_total(cells: dict[CellKey, Cell], doc: ResultDocument) -> None:
    """The calibration bins add up to the model's `n` and at-risk count (`prevalence` x n), both
    published among the document's parameters: the total a hidden bin could be subtracted from."""
    n = _number(doc.parameters.get("n"))
    prevalence = _number(doc.parameters.get("prevalence"))
    observed = None if math.isnan(n) or math.isnan(prevalence) else n * prevalence
    key = CellKey(frozenset(), _modelled(doc))
    sums: dict[str, tuple[tuple[float, float], float | None, float | None]] = {
        "observed": ((0.0, 1.0), observed, None),
        "predicted": ((0.0, 1.0), None, None),
    }
    cells[key] = Cell(key, n, sums=sums, fixed=True)


def _link_term(cells: dict[CellKey, Cell], ref: RowRef, values: dict[str, Any]) -> CellKey:
    """A model term's row shows `n`, the smaller of its category's and the reference's counts
    (`frame.category_sizes`): the very count of that group's cell. It joins that cell, so it is
    hidden when the cell is (a term row must not show a count the descriptives hide)."""
    n = _number(values.get("n"))
    category = next((part for part in str(values["term"]).split(":") if "[" in part), None)
    if category is not None and category.endswith("]"):
        column, name = category[:-1].split("[", 1)
        if column in REFERENCE:
            value: Any = {"yes": True, "no": False}.get(name, name) if column == "minority" else name
            for group in ({(column, value)}, {(column, REFERENCE[column])}):
                key = CellKey(frozenset(group), STUDENTS)
                if key in cells and cells[key].n == n:
                    cells[key].rows.append(ref)
                    return key
    return _own_cell(cells, ref, n)


def _school_sectors(docs: list[ResultDocument]) -> dict[Any, Any]:
    found = {}
    for doc in docs:
        for table in doc.tables:
            if {"school_id", "sector"} <= set(table.columns):
                i, j = table.columns.index("school_id"), table.columns.index("sector")
                found.update({row[i]: row[j] for row in table.rows if row[j] is not None})
    return found


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _group(table: ResultTable, values: dict[str, Any], sectors: dict[Any, Any]) -> Group:
    labels = {c: values[c] for c in table.label_columns if c not in NOT_DIMENSIONS}
    if "lower" in labels:  # a histogram bin: its lower edge names it
        labels.pop("lower")
    if "ses_lower" in labels:
        labels["bin:ses"] = labels.pop("ses_lower")
    if "school_id" in labels and "sector" not in labels and labels["school_id"] in sectors:
        labels["sector"] = sectors[labels["school_id"]]
    if labels.get("sector") == "all":  # the relation's line of everyone
        labels.pop("sector")
    return frozenset(labels.items())


def _add_row(
    cells: dict[CellKey, Cell],
    doc: ResultDocument,
    table: ResultTable,
    ref: RowRef,
    values: dict[str, Any],
    sectors: dict[Any, Any],
) -> CellKey:
    n = _number(values.get(table.group_size_column or ""))
    if doc.n_input is not None and doc.sample_size is not None and "school_id" in values:
        return _own_cell(cells, ref, n)  # a sample's school counts are not the schools' counts
    sums = _sums(doc, table, values, n)
    if sums is None:
        return _own_cell(cells, ref, n)
    group = _group(table, values, sectors)
    if "lower" in values and "upper" in values and doc.analysis == "distribution":
        variable = doc.scope
        group = group | {(f"bin:{variable}", values["lower"])}
        sums = {variable: ((float(values["lower"]), float(values["upper"])), None, None)}
    pops = {population(v) for v in sums} or {STUDENTS}
    if _is_calibration(table):  # a bin of the model's students by predicted probability
        group, pops = frozenset({("bin:predicted", values["lower"])}), {_modelled(doc)}
    key = CellKey(group, pops.pop())
    cell = cells.setdefault(key, Cell(key, n))
    cell.rows.append(ref)
    if any(is_quantile(c) and values.get(c) is not None for c in table.columns):
        cell.quantile_rows.append(ref)
    for variable, (bounds, s, q) in sums.items():
        old = cell.sums.get(variable)
        cell.sums[variable] = (
            bounds if old is None else old[0],
            s if old is None or old[1] is None else old[1],
            q if old is None or old[2] is None else old[2],
        )
    return key


def _sums(
    doc: ResultDocument, table: ResultTable, values: dict[str, Any], n: float
) -> dict[str, tuple[tuple[float, float], float | None, float | None]] | None:
    """Per variable the row's (range, sum, sum of squares); {} for a plain count of students;
    None for a row this module does not model."""
    columns = set(table.columns)
    if _is_calibration(table):  # the at-risk count (0 or 1 each) and predicted sum of a bin
        observed = _moments(n, values.get("observed_rate"), None, False)[0]
        predicted = _moments(n, values.get("mean_predicted"), None, False)[0]
        bin_range = (float(values["lower"]), float(values["upper"]))
        return {"observed": ((0.0, 1.0), observed, None), "predicted": (bin_range, predicted, None)}
    if "variable" in columns and "mean" in columns:
        variable = values["variable"]
        if variable not in FIELDS_BY_NAME:
            return None
        return {variable: (value_range(variable), *_moments(n, values.get("mean"), values.get("sd"), True))}
    if "mean" in columns and doc.analysis == "descriptives":  # the mean math score table
        return {"math_score": (value_range("math_score"), *_moments(n, values.get("mean"), None, False))}
    if columns & set(_MEAN_COLUMNS):
        return {
            v: (value_range(v), *_moments(n, values.get(c), None, False))
            for c, v in _MEAN_COLUMNS.items()
            if c in columns
        }
    if {"lower", "upper"} <= columns and doc.analysis == "distribution":
        return {}
    if "school_id" in columns:
        return {}
    return None


def _moments(n: float, mean: Any, sd: Any, has_sd: bool) -> tuple[float | None, float | None]:
    m = _number(mean)
    if math.isnan(m) or math.isnan(n):
        return None, None
    s = n * m
    if not has_sd:
        return s, None
    d = _number(sd)
    if math.isnan(d):
        return s, (m * m if n == 1 else None)
    return s, (n - 1) * d * d + n * m * m


def _own_cell(cells: dict[CellKey, Cell], ref: RowRef, n: float) -> CellKey:
    key = CellKey(frozenset({("row", ref)}), f"row:{ref.key}:{ref.table}")
    cells[key] = Cell(key, n, rows=[ref], modelled=False)
    return key


def _margins(cells: dict[CellKey, Cell]) -> list[Margin]:
    by_shape: dict[tuple[str, frozenset[str]], list[CellKey]] = defaultdict(list)
    for key, cell in cells.items():
        if cell.modelled:
            by_shape[(key.population, frozenset(d for d, _ in key.group))].append(key)
    dimensions = {d for (_, dims) in by_shape for d in dims}
    margins = []
    for key in sorted((k for k, c in cells.items() if c.modelled), key=lambda k: k.label):
        dims = frozenset(d for d, _ in key.group)
        for d in sorted(dimensions - dims):
            shape = dims | {d, *IMPLIES.get(d, ())}
            parts = [p for p in by_shape.get((key.population, shape), []) if key.group <= p.group]
            if not parts:
                continue
            parts.sort(key=lambda p: p.label)
            total = sum(cells[p].n for p in parts)
            exhaustive = bool(abs(total - cells[key].n) < 0.5)
            margins.append(Margin(key, tuple(parts), exhaustive))
    return margins


def _nested(cells: dict[CellKey, Cell]) -> list[tuple[CellKey, CellKey]]:
    pairs = []
    for key, cell in cells.items():
        wider = CellKey(key.group, STUDENTS)
        if cell.modelled and key.population != STUDENTS and wider in cells:
            pairs.append((key, wider))
    return sorted(pairs, key=lambda p: p[0].label)
