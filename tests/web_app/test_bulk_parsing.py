"""The streaming upload parsers as pure logic (no server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from web_app.bulk import BulkFormatError, BulkTally, csv_batches, ndjson_batches


async def _stream(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _collect(parser, data: bytes, size: int = 5, batch_rows: int = 2) -> tuple[list, BulkTally]:
    tally = BulkTally()
    rows = []
    async for table in parser(_stream(data, size), tally, batch_rows):
        rows.extend(table.to_pylist())
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
