"""Telling a resent record from a different one under the same id (pure logic)."""

from __future__ import annotations

import math

from web_app.submissions import ANSWERS_DIGEST, answers_digest, raw_record, same_submission

ANSWERS = {"school_id": "1224", "math_score": 15, "ses": 0.5, "consent": True}


def test_the_digest_compares_numbers_by_value_and_keeps_nan_and_infinities_apart() -> None:
    assert answers_digest(ANSWERS) == answers_digest({**ANSWERS, "math_score": 15.0})
    assert answers_digest(ANSWERS) == answers_digest(dict(reversed(ANSWERS.items())))
    digests = {answers_digest({**ANSWERS, "ses": v}) for v in (math.nan, math.inf, -math.inf, None, 0.5)}
    assert len(digests) == 5
    assert answers_digest({**ANSWERS, "ses": math.nan}) == answers_digest({**ANSWERS, "ses": math.nan})
    assert answers_digest({**ANSWERS, "school_id": "\ud800"})  # a lone surrogate from JSON is no error


def test_a_record_is_the_same_by_its_digest_wherever_it_is_stored() -> None:
    record = raw_record(ANSWERS, source="api", submission_id="k1")
    cleaned = {
        "_id": "k1",
        "school_id": "1224",
        "math_score": 15.0,
        "changes": [],
        ANSWERS_DIGEST: record[ANSWERS_DIGEST],
    }
    assert same_submission(cleaned, record)
    assert not same_submission(cleaned, raw_record({**ANSWERS, "ses": 2}, source="api", submission_id="k1"))


def test_a_record_stored_before_digests_is_compared_while_in_raw_and_taken_as_the_same_once_cleaned() -> None:
    record = raw_record(ANSWERS, source="api", submission_id="k1")
    legacy_raw = {k: v for k, v in record.items() if k != ANSWERS_DIGEST}
    assert same_submission(legacy_raw, record)
    assert not same_submission({**legacy_raw, "ses": 2}, record)
    legacy_cleaned = {"_id": "k1", "school_id": "1224", "ses": 0.5, "changes": [], ANSWERS_DIGEST: None}
    legacy_receipt = {"_id": "k1", "submission_id": "k1", "source": "api"}
    assert same_submission(legacy_cleaned, record) and same_submission(legacy_receipt, record)


def test_a_record_stored_before_digests_with_consent_as_sent_matches_its_retry() -> None:
    """Consent is stored as `yes` now; one stored before digests kept it as sent (`Yes`)."""
    record = raw_record({**ANSWERS, "consent": "Yes"}, source="api", submission_id="k1")
    legacy_raw = {k: v for k, v in record.items() if k != ANSWERS_DIGEST} | {"consent": "Yes"}
    assert record["consent"] == "yes" and same_submission(legacy_raw, record)
    assert not same_submission({**legacy_raw, "consent": "no"}, record)
