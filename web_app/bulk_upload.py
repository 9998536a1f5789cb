"""One bulk upload from body to `raw`, and its report, also when the upload is cut off.

Each batch goes to the db-api as a write stream of its own once it is parsed, so no db-api stream
waits on a client's body, and a stalled upload holds nothing there. What is committed stays
committed: when an upload stops (a line the parser cannot read on from, a record too long, a
stalled or oversized body, the db-api failing), the answer is the error with the report of what
was stored. Records up to `stored_through_line` were stored or refused (as listed); nothing after
`maybe_stored_through_line` was stored. Between the two lies the batch whose write failed: a
batch may go as several messages, each committed on its own, and a write cut off by the db-api
failing may have committed, so its records may or may not be stored. Records with a
`submission_id` can be sent again from anywhere before; those without get new ids when sent
again, so the answer says when resending them could store some twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

import grpc
import pyarrow as pa
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from pipeline_lib.client.aio import AsyncDbApiClient
from pipeline_lib.wire.requests import DbApiCallError
from web_app.bulk import BulkTally, RawBatch
from web_app.bulk_records import BulkFormatError
from web_app.problems import problem
from web_app.submissions import BulkReport, owned_batches

log = logging.getLogger(__name__)

# db-api status -> (HTTP status, title). Write payloads are split under the db-api's message
# limit, so RESOURCE_EXHAUSTED here means its streams are all taken.
_DB_FAILURES = {
    grpc.StatusCode.UNAVAILABLE: (503, "The database service is unavailable; try again shortly"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "The database service did not answer in time; try again"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (503, "The database service is busy; try again shortly"),
    grpc.StatusCode.INVALID_ARGUMENT: (422, "The database refused the data"),
}


class UploadCutOff(Exception):
    """The upload stopped before its end: the reason (the problem's title, as for every error of
    this app) and what was stored until then."""

    def __init__(
        self, status: int, reason: str, report: BulkReport, through: int, maybe_through: int
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.report = status, reason, report
        self.through, self.maybe_through = through, max(through, maybe_through)

    def response(self) -> JSONResponse:
        response = problem(
            self.status,
            self.reason,
            _what_was_stored(self.through, self.maybe_through),
            **self.report.model_dump(),
            stored_through_line=self.through,
            maybe_stored_through_line=self.maybe_through,
        )
        # The rest of the body is not read: the connection cannot carry another request.
        response.headers["Connection"] = "close"
        return response


def _what_was_stored(through: int, maybe_through: int) -> str:
    if maybe_through == through == 0:
        return "Nothing of this upload was stored."
    certain = (
        f"Records up to line {through} were stored, or refused as listed in problems"
        if through
        else "None of the records before the failure was confirmed stored"
    )
    if maybe_through == through:
        return f"{certain}; nothing after line {through} was stored."
    return (
        f"{certain}; those from line {through + 1} to line {maybe_through} may or may not be stored (the "
        f"database did not confirm them); nothing after line {maybe_through} was stored. Send again from "
        f"line {through + 1}: records with a submission_id are stored once however often they are sent, "
        f"records without one up to line {maybe_through} may be stored twice."
    )


def _failure(exc: Exception) -> tuple[int, str]:
    """(HTTP status, reason) for what stopped an upload."""
    if isinstance(exc, BulkFormatError):
        return exc.status, str(exc)
    if isinstance(exc, HTTPException):  # from reading the body: too large (413), stalled (408)
        return exc.status_code, str(exc.detail)
    if isinstance(exc, ClientDisconnect):
        return 400, "The client closed the connection before the end of the upload"
    assert isinstance(exc, DbApiCallError)
    status, title = _DB_FAILURES.get(exc.code, (502, "The database service failed"))
    return status, f"{title}: {exc.details}"


async def store_upload(
    db: AsyncDbApiClient, account: str, batches: AsyncGenerator[RawBatch], tally: BulkTally
) -> BulkReport:
    """Write `batches` to `raw` as the account's own, one stream per batch, the next batch parsed
    while one is written; the report, or `UploadCutOff` with the report so far."""
    ends: list[int] = []
    committed = {"stored": 0, "already": 0, "through": 0, "sent_through": 0}

    async def tables() -> AsyncIterator[pa.Table]:
        async for batch in batches:
            ends.append(batch.last_line)
            yield batch.table

    async def write(table: pa.Table, end: int) -> None:
        committed["sent_through"] = end  # from here until it is confirmed, its outcome is unknown
        result = await db.write("raw", table, mode="insert", key="submission_id")
        committed["stored"] += result.inserted
        committed["already"] += result.skipped
        committed["through"] = end

    writing: asyncio.Task[None] | None = None
    try:
        try:
            async for table in owned_batches(account, tables()):
                if writing is not None:
                    await writing  # one write at a time: two batches in memory at most
                writing = asyncio.create_task(write(table, ends[-1]))
        finally:
            if writing is not None:
                await writing  # a batch sent is counted before any answer
            await batches.aclose()  # its reading of the body ends now, not when it is collected
    except (BulkFormatError, HTTPException, ClientDisconnect, DbApiCallError) as exc:
        status, reason = _failure(exc)
        report = _report(tally, committed["stored"], committed["already"])
        log.warning(
            "bulk upload cut off",
            extra={"account": account, "status": status, "error": reason, **committed},
        )
        raise UploadCutOff(status, reason, report, committed["through"], committed["sent_through"]) from None
    return _report(tally, committed["stored"], committed["already"])


def _report(tally: BulkTally, stored: int, already: int) -> BulkReport:
    return BulkReport(
        received=tally.received,
        stored=stored,
        already_stored=already,
        refused=tally.refused,
        problems=tally.problems,
    )
