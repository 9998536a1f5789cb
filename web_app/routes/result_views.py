"""What the result pages and downloads make of a result as its reader may see it (the output of
`suppress`, never a stored document): its chart, its tables paged, and its tables as CSV. Pure."""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.process.results import PublicResult, PublicTable
from pipeline_lib.views.charts import bar_chart_svg, standalone_svg

PAGE_ROWS = 50
# More bars than this are not a chart anyone can read (one per school): the tables have them.
MAX_CHART_BARS = 40
NOTES_COLUMN = "why"
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def chart_svg(result: PublicResult) -> str | None:
    """The result's chart, or else its first table's first numeric column by its first column;
    none for a table too long to read as bars. Hidden rows draw no bar and say suppressed."""
    if not result.tables:
        return None
    spec = result.chart
    table = next((t for t in result.tables if spec and t.name == spec.table), result.tables[0])
    if spec and spec.x in table.columns and spec.y in table.columns:
        x, y, title = table.columns.index(spec.x), table.columns.index(spec.y), spec.title or table.title
    else:
        numeric = [
            i
            for i, c in enumerate(table.columns)
            if i > 0 and c != "n" and any(isinstance(r[i], int | float) for r in table.rows)
        ]
        if not numeric:
            return None
        x, y, title = 0, numeric[0], f"{table.title}: {table.columns[numeric[0]]}"
    if len(table.rows) > MAX_CHART_BARS:
        return None
    if result.exact:  # an analyst's chart must not pass for the public one, on a page or as a file
        title = f"{title} (exact figures, analyst view)"
    labels = [str(row[x]) for row in table.rows]
    values = [
        None if flag or row[y] is None else float(row[y])
        for row, flag in zip(table.rows, table.suppressed, strict=True)
    ]
    return bar_chart_svg(labels, values, title)


@functools.cache
def _chart_fonts() -> list[str]:
    """The DejaVu fonts matplotlib ships (found, not imported): a PNG's text reads the same on
    every server, whatever fonts the system has."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return []
    folder = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
    return [str(folder)] if folder.is_dir() else []


def chart_png(svg: str, zoom: float = 2.0) -> bytes:
    """The chart drawn as a PNG (twice its size by default, sharp on a slide or in print), by
    resvg. The SVG is ours and at most MAX_CHART_BARS bars, so the work is bounded."""
    import resvg_py

    fonts = _chart_fonts()
    return bytes(
        resvg_py.svg_to_bytes(
            svg_string=standalone_svg(svg),
            zoom=zoom,
            background="#ffffff",
            font_dirs=fonts,
            skip_system_fonts=bool(fonts),
            font_family="DejaVu Sans",
            sans_serif_family="DejaVu Sans",
        )
    )


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return "" if value is None else value


def table_csv(table: PublicTable) -> str:
    """A table as its page shows it, as CSV: a header row, hidden cells empty, and a last column
    saying why a row is hidden or not updated (empty for a row shown as computed)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_csv_cell(c) for c in [*table.columns, NOTES_COLUMN]])
    for index, row in enumerate(table.rows):
        note = table.notes[index] if index < len(table.notes) else None
        writer.writerow([_csv_cell(cell) for cell in [*row, note]])
    return out.getvalue()


def download_name(key: str, suffix: str, *, exact: bool) -> str:
    """A file name every system accepts (a key's ':' is not one on Windows); an analyst's exact
    figures say so in it, so a file that leaves the office is not mistaken for the public one."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    return f"{stem}{'-exact' if exact else ''}{suffix}"


@dataclass(frozen=True)
class TablePage:
    """One page of a table's rows, and where its neighbours are."""

    table: PublicTable
    number: int
    pages: int
    first: int  # index of its first row in the table

    @property
    def rows(self) -> list[tuple[list[Any], bool, str | None]]:
        """Each row with whether it is hidden and its note."""
        shown = slice(self.first, self.first + PAGE_ROWS)
        rows, hidden = self.table.rows[shown], self.table.suppressed[shown]
        notes = [*self.table.notes, *[None] * (len(self.table.rows) - len(self.table.notes))][shown]
        return list(zip(rows, hidden, notes, strict=True))

    @property
    def last(self) -> int:
        """Number of its last row, counted from 1."""
        return min(self.first + PAGE_ROWS, len(self.table.rows))

    @property
    def noted(self) -> bool:
        """The table has a note on any row, so the page shows the "why" column."""
        return any(self.table.notes)


def table_page(table: PublicTable, wanted: int) -> TablePage:
    """The `wanted` page of a table, counted from 1; past its last page, its last page."""
    pages = max(1, math.ceil(len(table.rows) / PAGE_ROWS))
    number = min(max(wanted, 1), pages)
    return TablePage(table, number, pages, (number - 1) * PAGE_ROWS)
