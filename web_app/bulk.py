"""Bulk uploads (CSV or NDJSON) parsed as a stream into Arrow batches for `raw`.

The body is never held whole: `bulk_records` splits records off as bytes arrive (linear, each
record and value bounded) and every `batch_rows` records become one batch. Parsing runs in a
worker thread, a piece of the body at a time, so an upload never holds the event loop. A value
may have `MAX_VALUE_CHARS` characters, as in a single submission. Records without consent, with
unknown fields, a bad id or a value too long are refused and reported by line; the rest are
stored as typed (text), each with a submission id.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from pipeline_lib.contract.fields import CONSENT, STUDENT_FIELDS, TRUE_TOKENS
from pipeline_lib.wire.bson_codec import new_id, to_text
from web_app.bulk_records import MAX_RECORD_CHARS, BulkFormatError, RecordSplitter
from web_app.submissions import MAX_VALUE_CHARS

ALLOWED_COLUMNS = frozenset({f.name for f in STUDENT_FIELDS} | {CONSENT.name, "submission_id"})
FEED_BYTES = 64 * 1024  # the body is handed to the parsing thread in pieces of about this size
# A batch is also cut at this many characters of rows as sent: 10,000 rows of values near their
# 10,000-character limit would make a whole upload one batch, gigabytes as Python strings (up to
# 4 bytes a character) and Arrow. This bounds a batch to 32 MiB of strings at most, as much in Arrow.
BATCH_CHARS = 8 * 2**20
FEED_AFTER_PAUSE = 0.1  # seconds without a piece after which what has gathered (a line ended) is parsed
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_TRUE_TOKENS = pa.array(list(TRUE_TOKENS))
MAX_PROBLEMS = 20


@dataclass
class BulkTally:
    received: int = 0
    refused: int = 0
    problems: list[str] = field(default_factory=list)

    def refuse(self, line: int, why: str) -> None:
        self.refused += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"line {line}: {why}")


@dataclass(frozen=True)
class RawBatch:
    """Records ready for `raw`, and the line of the upload the batch ends on (its last record's
    last line: a quoted CSV value may hold line breaks)."""

    table: pa.Table
    last_line: int


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


def _long_value(names: list[str] | tuple[str, ...], values: list[str | None]) -> str | None:
    for name, value in zip(names, values, strict=True):
        if value is not None and len(value) > MAX_VALUE_CHARS:
            return f"the value of {name} is longer than {MAX_VALUE_CHARS:,} characters"
    return None


class _BatchBuilder:
    """Collects rows and turns them into Arrow batches for `raw`: CSV rows as lists in header
    order (`columns` given), NDJSON rows as dicts."""

    def __init__(self, tally: BulkTally, batch_rows: int, columns: list[str] | None = None) -> None:
        self.tally = tally
        self.batch_rows = batch_rows
        self.columns = columns
        self.rows: list = []
        self.lines: list[int] = []  # each row's first line, to report problems by
        self.last_line = 0  # the last line of the last row added
        self.id_prefix = new_id()
        self.count = 0
        self.chars = 0  # the rows' characters as sent

    def add(
        self, line: int, row: list[str] | dict[str, str | None], chars: int, last_line: int = 0
    ) -> RawBatch | None:
        """Add a row of `chars` characters as sent; a batch once it has `batch_rows` rows or
        BATCH_CHARS characters."""
        self.rows.append(row)
        self.lines.append(line)
        self.chars += chars
        self.last_line = max(line, last_line)
        return self.flush() if len(self.rows) >= self.batch_rows or self.chars >= BATCH_CHARS else None

    def flush(self) -> RawBatch | None:
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
        lines, self.rows, self.lines, self.chars = self.lines, [], [], 0
        kept = self._finish(table, lines)
        return None if kept is None else RawBatch(kept, self.last_line)

    def _finish(self, table: pa.Table, lines: list[int]) -> pa.Table | None:
        if CONSENT.name in table.column_names:
            consent = pc.utf8_lower(pc.utf8_trim_whitespace(table.column(CONSENT.name)))
            keep = pc.fill_null(pc.is_in(consent, _TRUE_TOKENS), False)
        else:  # NDJSON rows none of which has a consent key
            keep = pa.repeat(pa.scalar(False), table.num_rows)
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


class _Parser:
    """Bytes in, batches out, one piece of the body at a time; runs in a worker thread."""

    def __init__(self, tally: BulkTally, batch_rows: int, quoted: bool) -> None:
        self.tally = tally
        self.batch_rows = batch_rows
        self.splitter = RecordSplitter(quoted)
        self.builder = _BatchBuilder(tally, batch_rows)

    def feed(self, data: bytes, final: bool = False) -> list[RawBatch]:
        batches = []
        for line, text in self.splitter.feed(data, final):
            if text is None:
                self.too_long(line)
            elif (batch := self.record(line, text)) is not None:
                batches.append(batch)
        if final:
            self.finish()
            if (batch := self.builder.flush()) is not None:
                batches.append(batch)
        return batches

    def record(self, line: int, text: str) -> RawBatch | None:
        raise NotImplementedError

    def too_long(self, line: int) -> None:
        self.tally.received += 1
        self.tally.refuse(
            line, f"longer than {MAX_RECORD_CHARS:,} characters (a value may have {MAX_VALUE_CHARS:,})"
        )

    def finish(self) -> None:
        pass


class _CsvParser(_Parser):
    def __init__(self, tally: BulkTally, batch_rows: int) -> None:
        super().__init__(tally, batch_rows, quoted=True)
        self.header: list[str] | None = None

    def record(self, line: int, text: str) -> RawBatch | None:
        # Most records hold no quotes and no stray carriage return: for them `split` is exactly
        # what `csv` would give, and eight times faster.
        quoted = '"' in text or "\r" in text
        if self.header is None:
            try:
                columns = next(csv.reader([text])) if quoted else text.split(",")
            except csv.Error as exc:
                raise BulkFormatError(f"line {line}: the header is not CSV: {exc}") from None
            self.header = _check_header(columns)
            self.builder.columns = self.header
            return None
        self.tally.received += 1
        try:
            values = next(csv.reader([text])) if quoted else text.split(",")
        except csv.Error as exc:
            self.tally.refuse(line, f"not CSV: {exc}")
            return None
        if len(values) != len(self.header):
            self.tally.refuse(line, f"{len(values)} values for {len(self.header)} columns")
            return None
        if len(text) > MAX_VALUE_CHARS and (why := _long_value(self.header, values)):
            self.tally.refuse(line, why)
            return None
        # A record with quoted line breaks ends that many lines further on.
        return self.builder.add(line, values, len(text), line + text.count("\n"))

    def too_long(self, line: int) -> None:
        if self.header is None:
            raise BulkFormatError(f"line {line}: the header is longer than {MAX_RECORD_CHARS:,} characters")
        super().too_long(line)

    def finish(self) -> None:
        if self.header is None:
            raise BulkFormatError("the upload is empty: a CSV needs a header line")


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
    row = {name: to_text(v) for name, v in value.items()}
    if why := _long_value(tuple(row), list(row.values())):
        raise ValueError(why)
    return row


class _NdjsonParser(_Parser):
    def __init__(self, tally: BulkTally, batch_rows: int) -> None:
        super().__init__(tally, batch_rows, quoted=False)

    def record(self, line: int, text: str) -> RawBatch | None:
        self.tally.received += 1
        try:
            row = _ndjson_row(text)
        except ValueError as exc:
            self.tally.refuse(line, str(exc))
            return None
        return self.builder.add(line, row, len(text))


class _Pieces:
    """The body's pieces as they arrive, read one ahead by a task of its own, so waiting for the
    next piece can be given up after a pause without cutting the body's stream off (an async
    generator cancelled while it waits is closed)."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self._stream = stream
        self._queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(maxsize=1)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Pieces:
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        # Waits for it without taking its CancelledError: a cancellation of this task still comes through.
        await asyncio.wait({self._task})

    async def _pump(self) -> None:
        try:
            async for piece in self._stream:
                await self._queue.put(piece)
        except Exception as exc:  # the body stopped: the reader raises it, after the pieces before it
            await self._queue.put(exc)
        else:
            await self._queue.put(None)

    async def next(self, pause: float | None) -> bytes | None:
        """The next piece; b"" if none came within `pause` seconds; None at the body's end."""
        with anyio.move_on_after(math.inf if pause is None else pause):
            item = await self._queue.get()
            if isinstance(item, Exception):
                raise item
            return item
        return b""


async def _parsed_in_thread(stream: AsyncIterator[bytes], parser: _Parser) -> AsyncGenerator[RawBatch]:
    """Hands the body to `parser` in a worker thread, `FEED_BYTES` at a time (small pieces are
    gathered first, so a client sending a byte at a time costs no thread hop per byte), and what
    has gathered when the client pauses for `FEED_AFTER_PAUSE` seconds after a line break: the
    records it sent are parsed (and a batch they complete is stored) while it waits, not when it
    sends more."""
    gathered: list[bytes] = []
    size, line_ended = 0, False
    async with _Pieces(stream) as pieces:
        try:
            while (piece := await pieces.next(FEED_AFTER_PAUSE if line_ended else None)) is not None:
                gathered.append(piece)
                size += len(piece)
                line_ended = line_ended or b"\n" in piece
                if size >= FEED_BYTES or (not piece and line_ended):
                    data, gathered, size, line_ended = b"".join(gathered), [], 0, False
                    for batch in await anyio.to_thread.run_sync(parser.feed, data):
                        yield batch
        except (HTTPException, ClientDisconnect):
            # The body stopped (stalled, too large, the client gone): the rows that arrived still
            # count and may complete a batch to store, whatever pieces the network delivered them in.
            for batch in await anyio.to_thread.run_sync(parser.feed, b"".join(gathered)):
                yield batch
            raise
    for batch in await anyio.to_thread.run_sync(parser.feed, b"".join(gathered), True):
        yield batch


def csv_batches(
    stream: AsyncIterator[bytes], tally: BulkTally, batch_rows: int = 10_000
) -> AsyncGenerator[RawBatch]:
    return _parsed_in_thread(stream, _CsvParser(tally, batch_rows))


def ndjson_batches(
    stream: AsyncIterator[bytes], tally: BulkTally, batch_rows: int = 10_000
) -> AsyncGenerator[RawBatch]:
    return _parsed_in_thread(stream, _NdjsonParser(tally, batch_rows))


PARSERS: dict[str, Callable[..., AsyncGenerator[RawBatch]]] = {
    "text/csv": csv_batches,
    "application/x-ndjson": ndjson_batches,
    "application/ndjson": ndjson_batches,
}
