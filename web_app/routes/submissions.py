"""The submissions API: one JSON record, or many as a streamed CSV or NDJSON upload."""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import APIRouter, Header, HTTPException, Request, Response, Security, status

from pipeline_lib.wire.requests import DbApiCallError
from web_app.bulk import PARSERS, BulkTally
from web_app.bulk_upload import UploadCutOff, store_upload
from web_app.deps import DbDep, UploadSlotsDep, current_user
from web_app.problems import problem_responses
from web_app.security import TokenClaims
from web_app.submissions import (
    BulkReport,
    SubmissionIn,
    SubmissionReceipt,
    consent_given,
    idempotent_id,
    raw_record,
    same_submission,
    unconfirmed,
)

router = APIRouter(prefix="/api/v1/submissions", tags=["submissions"])
BUSY_RETRY_SECONDS = 10
_RETRY = {"Retry-After": "5"}
Submitter = Annotated[TokenClaims, Security(current_user, scopes=["submit"])]


def _unconfirmed_title(exc: DbApiCallError, *, keyed: bool) -> str:
    """What a client whose record may or may not be stored should do: the retry is safe only with
    the same Idempotency-Key (without one, a retry gets a new id)."""
    if exc.code == grpc.StatusCode.UNAVAILABLE:
        what = "The database service is unavailable, so the record may not be stored"
    else:
        what = "The database service did not confirm the record in time, so it may not be stored"
    if keyed:
        return f"{what}: send it again with the same Idempotency-Key, which stores it once"
    return (
        f"{what}; as it was sent without an Idempotency-Key, sending it again may store it twice. Send "
        "an Idempotency-Key with every record: a retry with the same key is stored once"
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit one record",
    responses={
        200: {
            "model": SubmissionReceipt,
            "description": "A retry: this Idempotency-Key was already used for the same record",
        },
        **problem_responses(400, 401, 403, 413, 422, 503),
    },
)
async def submit_one(
    body: SubmissionIn,  # type: ignore[valid-type]
    user: Submitter,
    db: DbDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> SubmissionReceipt:
    """Stores the record in `raw` as given; cleaning checks it later. Without consent nothing is
    stored. Send an `Idempotency-Key` header to make retries harmless."""
    values = body.model_dump()  # type: ignore[attr-defined]
    if not consent_given(values.get("consent")):
        raise HTTPException(422, "consent must be true: nothing is stored without it")
    submission_id = idempotent_id(user.username, idempotency_key) if idempotency_key else None
    record = raw_record(values, source="api", submission_id=submission_id)
    try:
        stored = await db.insert_one("raw", record)
    except DbApiCallError as exc:
        if not unconfirmed(exc):
            raise
        raise HTTPException(503, _unconfirmed_title(exc, keyed=idempotency_key is not None), _RETRY) from exc
    if not stored.inserted:
        if not same_submission(stored.document, record):
            raise HTTPException(422, "This Idempotency-Key was already used for a different record")
        response.status_code = status.HTTP_200_OK
    return SubmissionReceipt(
        submission_id=stored.id,
        received_at=stored.document["received_at"],
        already_received=not stored.inserted,
    )


_BULK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
        "description": "CSV with a header line, or one JSON object per line. A submission_id column "
        "(optional) makes a retried upload harmless.",
    }
}


@router.post(
    "/bulk",
    summary="Submit many records (CSV or NDJSON)",
    openapi_extra=_BULK_BODY,
    responses=problem_responses(
        401,
        403,
        408,
        413,
        415,
        422,
        429,
        503,
        s408="The body stalled and was cut off; the problem lists what was stored until then",
        s413="The upload, or one record in it, is too large; the problem lists what was stored",
        s422="The upload cannot be read on (header, UTF-8, a quote never closed); the problem lists "
        "what was stored",
        s429="Too many bulk uploads in progress, for this account or in all",
    ),
)
async def submit_bulk(request: Request, user: Submitter, db: DbDep, slots: UploadSlotsDep) -> BulkReport:
    """Streams the upload to the db-api in batches; records without consent, with unknown
    fields or over the length limits are refused and reported by line, the others stored as
    given. A `submission_id` is the account's own: stored as `<account>:<submission_id>`, so
    another account's ids never collide with it. If the upload stops before its end, the error
    says what was stored until then (`stored_through_line`) and, when the database failed, up to
    which line records may or may not be stored (`maybe_stored_through_line`)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    parser = PARSERS.get(media_type)
    if parser is None:
        raise HTTPException(415, f"Send text/csv or application/x-ndjson, not {media_type or 'nothing'}")
    if (busy := slots.refusal(user.username)) is not None:
        headers = {"Retry-After": str(BUSY_RETRY_SECONDS), "Connection": "close"}
        raise HTTPException(429, busy, headers=headers)
    tally = BulkTally()
    with slots.taken(user.username):
        try:
            report = await store_upload(db, user.username, parser(request.stream(), tally), tally)
        except UploadCutOff as cut:
            return cut.response()  # type: ignore[return-value]
    return report
