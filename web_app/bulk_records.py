"""Splitting an upload's text into records as it arrives: linear, and bounded in length.

A record is a line, or in CSV several lines while a quoted value holds line breaks; where one ends
is asked of the `csv` module itself, a line at a time, so records split exactly where it would
split them and no text is looked at more than a bounded number of times. A record may have
`MAX_RECORD_CHARS` characters: room for every column at its value limit. A line over it is skipped
as it arrives (never held) and given as `None`, to be refused by line; a line with no quote cannot
open a quoted value, so the next line is the next record. A CSV record over the limit that holds a
quote (one never closed, say) stops the upload with 413: nothing can tell where the next record
starts.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator

from web_app.submissions import MAX_VALUE_CHARS

MAX_RECORD_CHARS = 128 * 1024


class BulkFormatError(ValueError):
    """The upload cannot be read on from here (bad header, not UTF-8): nothing after it is stored."""

    status = 422


class RecordTooLong(BulkFormatError):
    """A CSV record over the limit that holds a quote: the rest of the upload cannot be read."""

    status = 413


def _opens_quote(text: str) -> bool:
    """Whether a CSV record that starts with `text` goes on past its end (a quoted value holds a
    line break). Asks the `csv` module itself, so records split exactly where it would split them."""
    reader = csv.reader((text, ""))
    try:
        next(reader)
    except csv.Error:
        return False  # the record is refused when it is parsed
    return reader.line_num > 1


class RecordSplitter:
    """Decoded text to complete records, each with the number of its first line. With `quoted`
    (CSV), a record goes on over line breaks inside double quotes. A line over the limit comes
    as `None` (see the module's docstring)."""

    def __init__(self, quoted: bool) -> None:
        self.quoted = quoted
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.tail = ""  # text after the last line break
        self.pending: list[str] = []  # lines of a record still inside a quoted value
        self.pending_chars = 0
        self.pending_line = 0
        self.skipping = False  # inside a line over the limit, until its line break
        self.line_no = 0

    def _too_long(self, line: int) -> RecordTooLong:
        return RecordTooLong(
            f"line {line}: a record longer than {MAX_RECORD_CHARS:,} characters that holds a quote "
            f"(one never closed?), so the rest of the upload cannot be read; a value may have "
            f"{MAX_VALUE_CHARS:,} characters"
        )

    def _skip(self, text: str) -> str | None:
        """Drops `text` up to the end of the line being skipped; the rest, or None if all of it."""
        end = text.find("\n")
        if self.quoted and '"' in (text if end < 0 else text[:end]):
            raise self._too_long(self.line_no + 1)
        if end < 0:
            return None
        self.skipping = False
        return text[end + 1 :]

    def feed(self, data: bytes, final: bool = False) -> Iterator[tuple[int, str | None]]:
        """The records completed by `data`, as found: a problem is raised after the records before it."""
        try:
            text = self.decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise BulkFormatError(
                f"the upload is not UTF-8 text near line {self.line_no + 1}: {exc.reason}"
            ) from None
        if self.line_no == 0 and not self.tail and not self.skipping:
            text = text.removeprefix("\ufeff")  # a byte order mark, as spreadsheets write
        if self.skipping:
            rest = self._skip(text)
            if rest is None and not final:
                return
            self.line_no += 1
            yield self.line_no, None
            text = rest or ""
        lines = (self.tail + text).split("\n")
        self.tail = "" if final else lines.pop()
        for line in lines:
            self.line_no += 1
            line = line.removesuffix("\r")
            if self.pending:
                self.pending_chars += len(line) + 1
                if self.pending_chars > MAX_RECORD_CHARS:
                    raise self._too_long(self.pending_line)
                self.pending.append(line)
                if '"' in line and not _opens_quote('"' + line):  # as if inside the quoted value
                    yield self.pending_line, "\n".join(self.pending)
                    self.pending, self.pending_chars = [], 0
            elif len(line) > MAX_RECORD_CHARS:
                if self.quoted and '"' in line:
                    raise self._too_long(self.line_no)
                yield self.line_no, None
            elif self.quoted and '"' in line and _opens_quote(line):
                self.pending, self.pending_chars, self.pending_line = [line], len(line), self.line_no
            elif line.strip():
                yield self.line_no, line
        if self.pending and self.pending_chars + len(self.tail) > MAX_RECORD_CHARS:
            raise self._too_long(self.pending_line)
        if len(self.tail) > MAX_RECORD_CHARS:
            if self.quoted and '"' in self.tail:
                raise self._too_long(self.line_no + 1)
            self.skipping, self.tail = True, ""
        if final and self.pending:
            raise BulkFormatError(f"line {self.pending_line}: a quoted value is never closed")
