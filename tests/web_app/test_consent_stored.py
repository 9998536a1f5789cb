"""Consent the app accepts is consent the clean reads: the API read consent with `parse_bool`
(NFKC: full-width and other compatibility spellings), the clean's rules did not, and the clean
deletes a record without consent leaving nothing. So `"consent"` as full-width "yes" was answered 201 and
lost at the next clean. Now accepted text is stored as `yes`."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.clean import pandas_engine, rules
from pipeline_lib.clean.pandas_job import run_clean_pandas
from pipeline_lib.contract.fields import TRUE_TOKENS
from tests.web_app.conftest import WebStack
from web_app.submissions import answers_digest, consent_given, raw_record

ANSWERS = {"school_id": "1224", "sex": "female", "minority": "no", "ses": "0.5", "math_score": "50"}


# Spellings a person may type that `parse_bool` reads as yes, past the plain tokens.
def _full_width(text: str) -> str:
    """`text` in full-width letters, as an East Asian keyboard types them (NFKC reads them back)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


FULL_YES = _full_width("yes")
SPELLED = [FULL_YES, _full_width("YES"), _full_width("Y"), _full_width("true"), _full_width("ja")]
SPELLED += ["si\u0301", "\u017fi", " Yes\u200b "]  # a combining accent, a long s, a zero-width space


def _cleaned_consent(record: dict) -> bool:
    """Whether the clean keeps `record` (a raw document) as one with consent."""
    row = {c: None if record.get(c) is None else str(record[c]) for c in (*rules.META, *rules.FIELD_NAMES)}
    return pandas_engine.clean(pd.DataFrame([row]), {"1224"}).without_consent == 0


@pytest.mark.parametrize("spelling", [*sorted(TRUE_TOKENS), *SPELLED])
def test_each_spelling_of_consent_the_app_accepts_the_clean_reads_as_given(spelling: str) -> None:
    assert consent_given(spelling)
    assert _cleaned_consent(raw_record({**ANSWERS, "consent": spelling}, source="api"))


def test_the_digest_is_of_the_consent_as_sent() -> None:
    """A retry with its Idempotency-Key is matched by the digest: a record stored before consent was
    stored as `yes` must still match its retry."""
    record = raw_record({**ANSWERS, "consent": FULL_YES}, source="api")
    assert record["consent"] == "yes"
    assert record["answers_sha256"] == answers_digest({**ANSWERS, "consent": FULL_YES})


def test_an_api_submission_with_full_width_consent_is_cleaned_not_deleted(stack: WebStack) -> None:
    stack.db.write("schools", pd.DataFrame([{"school_id": "1224", "name": "Lakeside"}]), key="school_id")
    with stack.client() as http:
        answered = http.post(
            "/api/v1/submissions", json={**ANSWERS, "consent": FULL_YES}, headers=stack.auth("submitter")
        )
    assert answered.status_code == 201, answered.text
    report = run_clean_pandas(stack.db, run_id="clean-consent")
    assert (report.without_consent, report.cleaned, report.raw_deleted) == (0, 1, 1)  # was (1, 0, 1)
    assert stack.db.get_document("cleaned", answered.json()["submission_id"]) is not None
