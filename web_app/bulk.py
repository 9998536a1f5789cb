"""Bulk uploads (CSV or NDJSON) parsed as a stream into Arrow batches for `raw`.

The body is never held whole: lines are parsed as they arrive and every `batch_rows` records go
to the db-api as one batch. Records without consent, with unknown fields or a bad id are refused
and reported by line; the rest are stored as typed (text), each with a submission id.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from db_api.documents import new_id, to_text
from pipeline_lib.contract import CONSENT, STUDENT_FIELDS, TRUE_TOKENS

ALLOWED_COLUMNS = frozenset({f.name for f in STUDENT_FIELDS} | {CONSENT.name, "submission_id"})
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_TRUE_TOKENS = pa.array(list(TRUE_TOKENS))
MAX_PROBLEMS = 20


class BulkFormatError(ValueError):
    """The upload as a whole cannot be read (bad header, not UTF-8): nothing more is stored."""


@dataclass
class BulkTally:
    received: int = 0
    refused: int = 0
    problems: list[str] = field(default_factory=list)

    def refuse(self, line: int, why: str) -> None:
        self.refused += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"line {line}: {why}")


async def _records(stream: AsyncIterator[bytes], quoted: bool) -> AsyncIterator[list[tuple[int, str]]]:
    """Complete records with their first line number, a list per chunk received. With `quoted`,
    a record continues over newlines inside double quotes (CSV)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    tail, pending, pending_line, line_no = "", "", 0, 0

    def split(text: str, final: bool) -> list[tuple[int, str]]:
        nonlocal tail, pending, pending_line, line_no
        lines = text.split("\n")
        tail = "" if final else lines.pop()
        out = []
        for line in lines:
            line_no += 1
            line = line.removesuffix("\r")
            if pending:
                pending += "\n" + line
                if pending.count('"') % 2 == 0:
                    out.append((pending_line, pending))
                    pending = ""
            elif quoted and line.count('"') % 2:
                pending, pending_line = line, line_no
            elif line.strip():
                out.append((line_no, line))
        return out

    try:
        async for chunk in stream:
            if records := split(tail + decoder.decode(chunk), final=False):
                yield records
        if records := split(tail + decoder.decode(b"", final=True), final=True):
            yield records
    except UnicodeDecodeError as exc:
        raise BulkFormatError(f"the upload is not UTF-8 text near line {line_no + 1}: {exc.reason}") from None
    if pending:
        raise BulkFormatError(f"line {pending_line}: a quoted value is never closed")


def _check_header(columns: list[str]) -> list[str]:
    names = [c.strip() for c in columns]
    unknown = sorted(set(names) - ALLOWED_COLUMNS)
    if unknown:
        raise BulkFormatError(f"unknown columns {unknown}; allowed: {', '.join(sorted(ALLOWED_COLUMNS))}")
    if len(set(names)) != len(names):
        raise BulkFormatError(f"repeated columns in the header: {names}")
    if CONSENT.name not in names:
        raise BulkFormatError("the upload needs a consent column: nothing is stored without consent")
    return names


class _BatchBuilder:
    """Collects rows and turns them into Arrow batches for `raw`: CSV rows as lists in header
    order (`columns` given), NDJSON rows as dicts."""

    def __init__(self, tally: BulkTally, batch_rows: int, columns: list[str] | None = None) -> None:
        self.tally = tally
        self.batch_rows = batch_rows
        self.columns = columns
        self.rows: list = []
        self.lines: list[int] = []
        self.id_prefix = new_id()
        self.count = 0

    def add(self, line: int, row: list[str] | dict[str, str | None]) -> pa.Table | None:
        self.rows.append(row)
        self.lines.append(line)
        return self.flush() if len(self.rows) >= self.batch_rows else None

    def flush(self) -> pa.Table | None:
        if not self.rows:
            return None
        if self.columns is not None:
            # Column-wise: one C-level transpose instead of a dict per row; blanks become null.
            table = pa.table(
                {
                    name: _blank_as_null(pa.array(values, pa.string()))
                    for name, values in zip(self.columns, zip(*self.rows, strict=True), strict=True)
                }
            )
        else:
            names = sorted({name for row in self.rows for name in row})
            table = pa.table(
                {name: pa.array([row.get(name) for row in self.rows], pa.string()) for name in names}
            )
        lines, self.rows, self.lines = self.lines, [], []
        return self._finish(table, lines)

    def _finish(self, table: pa.Table, lines: list[int]) -> pa.Table | None:
        consent = pc.utf8_lower(pc.utf8_trim_whitespace(table.column(CONSENT.name)))
        keep = pc.fill_null(pc.is_in(consent, _TRUE_TOKENS), False)
        for index in pc.indices_nonzero(pc.invert(keep)).to_pylist():
            self.tally.refuse(lines[index], "no consent: not stored")
        if "submission_id" in table.column_names:
            valid_ids = pc.fill_null(
                pc.match_substring_regex(table.column("submission_id"), _ID.pattern), False
            )
            for index in pc.indices_nonzero(pc.and_(keep, pc.invert(valid_ids))).to_pylist():
                self.tally.refuse(lines[index], "submission_id must be 1-128 letters, digits or _.:-")
            keep = pc.and_(keep, valid_ids)
        table = table.filter(keep)
        if table.num_rows == 0:
            return None
        if "submission_id" not in table.column_names:
            start = self.count
            ids = [f"{self.id_prefix}-{i:07d}" for i in range(start, start + table.num_rows)]
            table = table.append_column("submission_id", pa.array(ids, pa.string()))
        self.count += table.num_rows
        now = pa.scalar(dt.datetime.now(dt.UTC), pa.timestamp("ms", tz="UTC"))
        table = table.append_column("received_at", pa.repeat(now, table.num_rows))
        return table.append_column("source", pa.repeat(pa.scalar("bulk"), table.num_rows))


def _blank_as_null(values: pa.Array) -> pa.Array:
    blank = pc.equal(pc.utf8_trim_whitespace(values), "")
    return pc.if_else(blank, pa.scalar(None, pa.string()), values)


async def csv_batches(
    stream: AsyncIterator[bytes], tally: BulkTally, batch_rows: int = 10_000
) -> AsyncIterator[pa.Table]:
    builder = _BatchBuilder(tally, batch_rows)
    header: list[str] | None = None
    async for records in _records(stream, quoted=True):
        if header is None:
            try:
                header = _check_header(next(csv.reader([records[0][1]])))
            except csv.Error as exc:
                raise BulkFormatError(f"line {records[0][0]}: the header is not CSV: {exc}") from None
            records = records[1:]
        for line, text in records:
            tally.received += 1
            try:
                values = next(csv.reader([text]))
            except csv.Error as exc:
                tally.refuse(line, f"not CSV: {exc}")
                continue
            if len(values) != len(header):
                tally.refuse(line, f"{len(values)} values for {len(header)} columns")
                continue
            row = {
                name: (value if value.strip() else None) for name, value in zip(header, values, strict=True)
            }
            if (batch := builder.add(line, row)) is not None:
                yield batch
    if header is None:
        raise BulkFormatError("the upload is empty: a CSV needs a header line")
    if (batch := builder.flush()) is not None:
        yield batch


def _ndjson_row(text: str) -> dict[str, str | None]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("each line must be one JSON object")
    unknown = sorted(set(value) - ALLOWED_COLUMNS)
    if unknown:
        raise ValueError(f"unknown fields {unknown}")
    if any(isinstance(v, dict | list) for v in value.values()):
        raise ValueError("values must be text, numbers or true/false, not objects or lists")
    return {name: to_text(v) for name, v in value.items()}


async def ndjson_batches(
    stream: AsyncIterator[bytes], tally: BulkTally, batch_rows: int = 10_000
) -> AsyncIterator[pa.Table]:
    builder = _BatchBuilder(tally, batch_rows)
    async for records in _records(stream, quoted=False):
        for line, text in records:
            tally.received += 1
            try:
                row = _ndjson_row(text)
            except ValueError as exc:
                tally.refuse(line, str(exc))
                continue
            if (batch := builder.add(line, row)) is not None:
                yield batch
    if (batch := builder.flush()) is not None:
        yield batch


PARSERS: dict[str, Callable[..., AsyncIterator[pa.Table]]] = {
    "text/csv": csv_batches,
    "application/x-ndjson": ndjson_batches,
    "application/ndjson": ndjson_batches,
}
