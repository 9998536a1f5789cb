"""The streaming upload parsers as pure logic (no server). The parsing thread is fed pieces of
the size the test sends (not the app's 64 KiB), so records cut anywhere are tested."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from web_app import bulk
from web_app.body_idle import BodyIdle
from web_app.bulk import BulkTally, csv_batches, ndjson_batches
from web_app.bulk_records import MAX_RECORD_CHARS, BulkFormatError, RecordTooLong


async def _stream(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(autouse=True)
def _feed_every_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "FEED_BYTES", 1)


async def _collect(parser, data: bytes, size: int = 5, batch_rows: int = 2) -> tuple[list, BulkTally]:
    tally = BulkTally()
    rows = []
    async for batch in parser(_stream(data, size), tally, batch_rows):
        rows.extend(batch.table.to_pylist())
    return rows, tally


async def test_csv_records_survive_any_chunking_including_quoted_newlines_and_crlf() -> None:
    data = b'school_id,ses,consent\r\n1,"1,5",yes\r\n2,"a\r\nb",YES\r\n3,,no\r\n\r\n4,2,y\r\n'
    for size in (1, 3, 64):
        rows, tally = await _collect(csv_batches, data, size)
        assert [(r["school_id"], r["ses"]) for r in rows] == [("1", "1,5"), ("2", "a\nb"), ("4", "2")]
        assert tally.problems == ["line 5: no consent: not stored"] and tally.received == 4
        assert len({r["submission_id"] for r in rows}) == 3


async def test_multibyte_characters_split_across_chunks_are_decoded() -> None:
    rows, _ = await _collect(csv_batches, "school_id,consent\nZürich🙂,yes\n".encode(), size=1)
    assert rows[0]["school_id"] == "Zürich🙂"


async def test_given_submission_ids_are_checked() -> None:
    rows, tally = await _collect(csv_batches, b"submission_id,consent\nok-1,yes\nbad id,yes\n")
    assert [r["submission_id"] for r in rows] == ["ok-1"]
    assert tally.problems == ["line 3: submission_id must be 1-128 letters, digits or _.:-"]


async def test_an_unclosed_quote_is_an_error_for_the_whole_upload() -> None:
    with pytest.raises(BulkFormatError, match="never closed"):
        await _collect(csv_batches, b'school_id,consent\n"1,yes\n')


async def test_ndjson_values_become_text_and_bad_lines_are_reported() -> None:
    data = b'{"ses": 1.5, "minority": true, "consent": true}\n[1]\n{"ses": {"a": 1}, "consent": true}\n'
    rows, tally = await _collect(ndjson_batches, data)
    assert rows[0]["ses"] == "1.5" and rows[0]["minority"] == "true"
    assert tally.refused == 2 and tally.problems[0] == "line 2: each line must be one JSON object"


async def test_quoted_records_split_where_the_csv_module_splits_them() -> None:
    # A quote inside an unquoted value is text; "" inside quotes is one quote; a quoted value may
    # be followed by text; a record goes on only while a quoted value is open.
    data = (
        b'school_id,student_ref,consent\n12" screen,a,yes\n"x ""y""",b,yes\n"q"r,"2\n'
        b'lines",yes\n"open\n""still"",\n\nclosed",c,yes\n'
    )
    for size in (1, 7, 4096):
        rows, tally = await _collect(csv_batches, data, size)
        values = [(r["school_id"], r["student_ref"]) for r in rows]
        assert values == [
            ('12" screen', "a"),
            ('x "y"', "b"),
            ("qr", "2\nlines"),
            ('open\n"still",\n\nclosed', "c"),
        ]
        assert tally.refused == 0 and tally.received == 4


async def test_batches_end_on_their_last_line() -> None:
    data = b"school_id,consent\n1,yes\n2,no\n\n3,yes\n4,yes\n"
    tally = BulkTally()
    batches = [b async for b in csv_batches(_stream(data, 3), tally, batch_rows=2)]
    assert [(b.table.num_rows, b.last_line) for b in batches] == [(1, 3), (2, 6)]


async def test_a_batch_ending_on_a_record_with_quoted_line_breaks_ends_on_its_last_line() -> None:
    """Where an upload is sent again from: the line after the batch's last record, not inside it."""
    data = b'school_id,sex,consent\n1,"a\r\nb\nc",yes\n2,"x\ny",yes\n3,f,yes\n'
    tally = BulkTally()
    batches = [b async for b in csv_batches(_stream(data, 3), tally, batch_rows=1)]
    assert [b.last_line for b in batches] == [4, 6, 7]


async def test_a_quoted_record_over_the_limit_stops_the_upload_with_its_line() -> None:
    endless = b'school_id,consent\n1,yes\n"' + b"\na" * MAX_RECORD_CHARS
    with pytest.raises(RecordTooLong, match="line 3: a record longer than 131,072 characters"):
        await _collect(csv_batches, endless, size=65536)
    one_line = b'school_id,consent\n1,yes\n2,"' + b"x" * MAX_RECORD_CHARS  # never ends
    with pytest.raises(RecordTooLong, match="line 3"):
        await _collect(csv_batches, one_line, size=65536)


@pytest.mark.parametrize("size", [1000, 65536, 10**6])
async def test_a_line_over_the_limit_without_quotes_is_skipped_and_refused_by_line(size: int) -> None:
    huge = b"x" * (MAX_RECORD_CHARS + 1)
    data = b"school_id,consent\n1,yes\n" + huge + b",yes\n2,yes\n" + huge
    rows, tally = await _collect(csv_batches, data, size=size)
    assert [r["school_id"] for r in rows] == ["1", "2"]
    assert tally.received == 4
    assert tally.problems == [
        "line 3: longer than 131,072 characters (a value may have 10,000)",
        "line 5: longer than 131,072 characters (a value may have 10,000)",
    ]
    ndjson = b'{"consent": true, "ses": "' + huge + b'"}\n{"consent": true, "ses": "1"}\n'
    rows, tally = await _collect(ndjson_batches, ndjson, size=size)
    assert [r["ses"] for r in rows] == ["1"] and tally.problems[0].startswith("line 1: longer than")


async def test_a_header_over_the_limit_is_an_error_for_the_whole_upload() -> None:
    with pytest.raises(BulkFormatError, match="line 1: the header is longer"):
        await _collect(csv_batches, b"x" * (MAX_RECORD_CHARS + 1) + b"\n1\n", size=65536)


async def test_a_value_over_10000_characters_is_refused_by_line() -> None:
    data = b"school_id,consent\n" + b"x" * 10_001 + b",yes\n" + b"x" * 10_000 + b",yes\n"
    rows, tally = await _collect(csv_batches, data, size=4096)
    assert [len(r["school_id"]) for r in rows] == [10_000]
    assert tally.problems == ["line 2: the value of school_id is longer than 10,000 characters"]


async def test_ndjson_rows_without_any_consent_key_are_refused_by_line() -> None:
    rows, tally = await _collect(ndjson_batches, b'{"ses": 1}\n{"ses": 2}\n{"ses": 3, "consent": "yes"}\n')
    assert [r["ses"] for r in rows] == ["3"]
    assert tally.problems == ["line 1: no consent: not stored", "line 2: no consent: not stored"]


async def test_a_byte_order_mark_is_not_part_of_the_header() -> None:
    rows, _ = await _collect(csv_batches, "\ufeffschool_id,consent\n1,yes\n".encode(), size=1)
    assert rows[0]["school_id"] == "1"


@pytest.mark.parametrize("parser", [csv_batches, ndjson_batches])
async def test_rows_received_before_the_body_stops_are_parsed_whatever_pieces_they_came_in(
    parser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are handed to the parser in pieces of FEED_BYTES; when the body stops (stalled, too
    large, the client gone) the rows gathered short of a piece still count and complete their
    batch. CI of 0407bff: an upload cut off after 10,005 rows reported 9,159 received and stored
    nothing, because the network had delivered the last 24 KB in a piece under 64 KiB."""
    monkeypatch.setattr(bulk, "FEED_BYTES", 1 << 20)
    lines = (
        [b"school_id,consent\n", *[b"1,yes\n"] * 5]
        if parser is csv_batches
        else [b'{"school_id": "1", "consent": "yes"}\n'] * 5
    )

    async def stalled() -> AsyncIterator[bytes]:
        for line in lines:
            yield line
        raise BodyIdle(5)

    tally = BulkTally()
    batches = []
    with pytest.raises(BodyIdle):
        async for batch in parser(stalled(), tally, 2):
            batches.append(batch)
    assert [b.table.num_rows for b in batches] == [2, 2]  # the fifth row waits for a batch that never fills
    assert tally.received == 5


class _SlowToStop:
    """A body that sends `first`, then waits; cancelled, it takes a moment to stop (as a read of a
    real body may), and says when it was asked to."""

    def __init__(self, first: bytes) -> None:
        self.first: bytes | None = first
        self.asked_to_stop = asyncio.Event()

    def __aiter__(self) -> _SlowToStop:
        return self

    async def __anext__(self) -> bytes:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.asked_to_stop.set()
            await asyncio.sleep(0.5)
            raise
        raise StopAsyncIteration


async def test_an_upload_cancelled_while_its_body_reader_stops_stays_cancelled() -> None:
    """An upload stops (here: a header over the limit) and waits for its body reader to stop; the
    server cancels it meanwhile (a shutdown): that cancellation was swallowed, and the upload
    went on as if it had only failed."""
    body = _SlowToStop(b"x" * (MAX_RECORD_CHARS + 1) + b"\n")

    async def upload() -> None:
        async for _ in csv_batches(body, BulkTally()):
            pass

    task = asyncio.create_task(upload())
    await asyncio.wait_for(body.asked_to_stop.wait(), 30)
    task.cancel()
    await asyncio.wait({task}, timeout=30)
    assert task.cancelled(), task.exception()


async def test_a_batch_of_wide_rows_is_cut_by_its_characters() -> None:
    """A batch was 10,000 rows however wide: rows of values near their 10,000-character limit made
    the whole 512 MiB upload one batch, gigabytes as Python strings (review)."""
    row = ",".join(["x" * 9_999] * 5 + ["yes"])
    data = ("school_id,sex,minority,ses,math_score,consent\n" + (row + "\n") * 400).encode()
    tally = BulkTally()
    sizes = []
    async for batch in csv_batches(_stream(data, 2**20), tally, 10_000):
        sizes.append(batch.table.num_rows)
    assert sum(sizes) == 400 and tally.received == 400
    assert len(sizes) > 1 and max(sizes) * len(row) <= bulk.BATCH_CHARS + len(row), sizes
