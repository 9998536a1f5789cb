"""What a submission becomes in `raw`: the values as typed, plus receipt metadata.

Pure functions: the routes call them, tests call them directly. Cleaning happens later, in the
clean step; here only consent and the shape of the record are checked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from pipeline_lib.contract.fields import ANSWERS_DIGEST, CONSENT, STUDENT_FIELDS, parse_bool
from pipeline_lib.wire.bson_codec import new_id
from pipeline_lib.wire.requests import DbApiCallError

MAX_VALUE_CHARS = 10_000
Scalar = str | int | float | bool | None
WHOLE_NUMBER_LIMIT = 2**63 - 1  # BSON's widest integer


def _storable(value: Scalar) -> Scalar:
    """A whole number must fit BSON's 64 bits (the store would refuse it after validation, as an
    unexplained server error)."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not (-WHOLE_NUMBER_LIMIT - 1 <= value <= WHOLE_NUMBER_LIMIT)
    ):
        raise ValueError(f"whole numbers must lie within ±{WHOLE_NUMBER_LIMIT:,}: send larger ones as text")
    return value


StoredScalar = Annotated[Scalar, AfterValidator(_storable)]


def _submission_model() -> type[BaseModel]:
    """The JSON body of one API submission, generated from the data contract: every field as the
    submitter has it (text, number or boolean); unknown or nested keys are refused."""
    fields: dict[str, Any] = {
        f.name: (StoredScalar, Field(default=None, title=f.label, description=f.hint or None))
        for f in STUDENT_FIELDS
    }
    fields[CONSENT.name] = (bool | str, Field(title="Consent", description=CONSENT.label))
    return create_model(
        "SubmissionIn",
        __config__=ConfigDict(extra="forbid", str_max_length=MAX_VALUE_CHARS),
        **fields,
    )


SubmissionIn = _submission_model()


class SubmissionReceipt(BaseModel):
    submission_id: str
    received_at: dt.datetime
    already_received: bool = Field(description="true if this was a retry of a stored submission")


class BulkReport(BaseModel):
    received: int = Field(description="records read from the upload")
    stored: int
    already_stored: int = Field(description="records whose submission_id this account had already stored")
    refused: int
    problems: list[str] = Field(description="the first problems found, with their line numbers")


def consent_given(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and parse_bool(value) is True


# Who may choose which stored ids: every id a client influences names its owner, so nobody can
# take (or guess into) an id another account, or another form page, will send.
#   API with an Idempotency-Key  k<hash of account and key>
#   bulk upload                  <account>:<the row's submission_id, or one made for it>
#   form page                    f<hash of the page's random nonce>
#   API without a key            an ObjectId (24 hex digits)


def idempotent_id(principal: str, key: str) -> str:
    """The submission id for an Idempotency-Key: the same key from the same caller, the same id."""
    digest = hashlib.sha256(f"{principal}\n{key}".encode()).hexdigest()
    return f"k{digest[:31]}"


def _account_prefix(account: str) -> str:
    # Escaping '%' and ':' keeps the account's part unambiguous whatever the name holds.
    return account.replace("%", "%25").replace(":", "%3A") + ":"


def owned_submission_id(account: str, client_id: str) -> str:
    """The stored id of a bulk row: the account, a colon, the row's id. Two accounts never
    collide; the same account sending the same id again is a retry of the same record."""
    return _account_prefix(account) + client_id


async def owned_batches(account: str, batches: AsyncIterator[pa.Table]) -> AsyncIterator[pa.Table]:
    """Bulk batches with each `submission_id` made the account's own (`owned_submission_id`),
    one vectorised string join per batch."""
    prefix = _account_prefix(account)
    async for table in batches:
        index = table.schema.get_field_index("submission_id")
        ids = pc.binary_join_element_wise(prefix, table.column(index), "")
        yield table.set_column(index, "submission_id", ids)


def form_submission_id(nonce: str) -> str:
    """The submission id of a form page: its nonce, hashed (a resent page, the same id)."""
    return "f" + hashlib.sha256(nonce.encode()).hexdigest()[:31]


def answers_digest(answers: dict[str, Scalar]) -> str:
    """A digest of the answers as sent (names and values): the clean carries it on, so a record
    resent under its id is known from a different one also once cleaned. Numbers are compared by
    value (15 and 15.0 are the same answer); NaN and the infinities stay distinct."""
    canonical = {name: _same_number(value) for name, value in answers.items()}
    text = json.dumps(canonical, sort_keys=True, allow_nan=True)  # ASCII: lone surrogates too
    return hashlib.sha256(text.encode()).hexdigest()


def _same_number(value: Scalar) -> Scalar:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def raw_record(values: dict[str, Any], *, source: str, submission_id: str | None = None) -> dict:
    """The raw document: contract fields as given (missing ones left out), consent as the clean
    reads it (`stored_consent`), plus metadata."""
    submission_id = submission_id or new_id()
    record = {f.name: values[f.name] for f in STUDENT_FIELDS if values.get(f.name) is not None}
    record[CONSENT.name] = values.get(CONSENT.name)
    digest = answers_digest(record)  # of the answers as sent, by which a resent record is known
    record[CONSENT.name] = stored_consent(record[CONSENT.name])
    return {
        "_id": submission_id,
        "submission_id": submission_id,
        "received_at": dt.datetime.now(dt.UTC),
        "source": source,
        ANSWERS_DIGEST: digest,
        **record,
    }


def stored_consent(value: object) -> object:
    """Consent this app accepted as text, in the one spelling every clean reads as given: `yes`.
    `parse_bool` reads spellings (full-width letters, other compatibility forms: NFKC) that the
    clean's rules do not, and the clean deletes a record it reads without consent, leaving nothing:
    a submission acknowledged with 201 was lost at the next clean. Anything else is kept as sent."""
    return "yes" if isinstance(value, str) and consent_given(value) else value


def same_submission(stored: dict, record: dict) -> bool:
    """Whether a stored record (in raw, or cleaned since) holds the same answers as `record`,
    metadata aside, for a resent form page or a reused Idempotency-Key."""
    if stored.get(ANSWERS_DIGEST) is not None:
        return stored[ANSWERS_DIGEST] == record.get(ANSWERS_DIGEST)
    # Stored before records had a digest: its answers can be compared while it is still in raw
    # as sent; once cleaned they are typed, so the stored record is taken to be this one.
    if not _as_sent(stored):
        return True
    names = [f.name for f in STUDENT_FIELDS]
    # Stored as sent, consent may be spelled otherwise than `stored_consent` stores it now.
    same_consent = stored_consent(stored.get(CONSENT.name)) == record.get(CONSENT.name)
    return same_consent and all(stored.get(name) == record.get(name) for name in names)


def _as_sent(stored: dict) -> bool:
    """A raw record: it holds consent as sent, and nothing the clean adds."""
    return CONSENT.name in stored and "changes" not in stored and "reasons" not in stored


def unconfirmed(exc: DbApiCallError) -> bool:
    """Whether a failed insert may still have been stored: the db-api did not answer in time or the
    connection failed, so its outcome is unknown (the db-api withdraws an insert whose deadline
    passed while it waited, so it is stored only if its commit was under way as time ran out)."""
    return exc.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
