"""The public form's route logic, in process (see conftest): CSRF, rate limit, errors, receipts."""

from __future__ import annotations

import pytest

from tests.web_app.routes.conftest import FastApp
from web_app.deps import get_form_limiter
from web_app.ratelimit import FormRateLimiter

GOOD = {
    "school_id": "01224",
    "sex": "female",
    "minority": "no",
    "ses": "1,5",
    "math_score": "12",
    "consent": "yes",
    "nonce": "page-nonce-1",
}


def test_the_form_page_lists_the_contract_fields_and_the_known_schools(fast: FastApp) -> None:
    fast.db.collections["schools"] = {"1224": {"_id": "1224", "school_id": "1224", "name": "Lakeside"}}
    page = fast.http.get("/")
    assert page.status_code == 200
    for name in ("school_id", "sex", "minority", "ses", "math_score", "consent", "csrf", "nonce"):
        assert f'name="{name}"' in page.text
    assert "Lakeside" in page.text


def test_the_form_works_without_school_suggestions_when_the_db_api_is_down(fast: FastApp) -> None:
    fast.db.down = True
    assert fast.http.get("/").status_code == 200


@pytest.mark.parametrize("csrf", [None, "forged"])
def test_a_post_without_its_pages_csrf_token_is_refused_and_its_answers_kept(
    fast: FastApp, csrf: str | None
) -> None:
    fast.csrf()  # the cookie is there; the field is missing or wrong
    data = {**GOOD, "ses": "7,25"} | ({"csrf": csrf} if csrf else {})
    response = fast.http.post("/", data=data)
    assert response.status_code == 403 and "sent from elsewhere" in response.text
    assert 'value="7,25"' in response.text
    assert fast.db.stored("raw") == {}


def test_a_valid_post_is_stored_once_and_redirected_to_its_receipt(fast: FastApp) -> None:
    data = {**GOOD, **fast.csrf()}
    first = fast.http.post("/", data=data)
    resent = fast.http.post("/", data=data)
    assert first.status_code == 303 and first.headers["location"].startswith("/thanks/")
    assert resent.headers["location"] == first.headers["location"]
    (stored,) = fast.db.stored("raw").values()
    assert stored["school_id"] == "01224" and stored["ses"] == "1,5" and stored["source"] == "form"
    receipt = fast.http.get(first.headers["location"])
    assert receipt.status_code == 200 and stored["_id"] in receipt.text


def test_the_same_page_sent_again_with_other_answers_is_a_conflict_not_a_receipt(fast: FastApp) -> None:
    csrf = fast.csrf()
    fast.http.post("/", data={**GOOD, **csrf})
    again = fast.http.post("/", data={**GOOD, **csrf, "math_score": "40"})
    assert again.status_code == 409 and "already sent once" in again.text
    assert 'value="page-nonce-1"' not in again.text  # a fresh page, a new submission when sent
    assert len(fast.db.stored("raw")) == 1


def test_wrong_answers_are_explained_and_nothing_is_stored(fast: FastApp) -> None:
    response = fast.http.post("/", data={**GOOD, **fast.csrf(), "ses": "abc", "consent": ""})
    assert response.status_code == 422
    assert 'id="ses-error">Enter a number' in response.text
    assert "without your consent nothing can be stored" in response.text
    assert fast.db.stored("raw") == {}


def test_posts_over_the_clients_limit_are_refused_with_the_wait(fast: FastApp) -> None:
    limiter = FormRateLimiter("1/minute")
    fast.app.dependency_overrides[get_form_limiter] = lambda: limiter
    ok = fast.http.post("/", data={**GOOD, **fast.csrf()})
    over = fast.http.post("/", data={**GOOD, **fast.csrf(), "nonce": "page-nonce-2"})
    assert ok.status_code == 303
    assert over.status_code == 429 and "Too many submissions from your address" in over.text
    assert len(fast.db.stored("raw")) == 1


def test_a_csrf_refusal_does_not_count_against_the_rate_limit(fast: FastApp) -> None:
    limiter = FormRateLimiter("1/minute")
    fast.app.dependency_overrides[get_form_limiter] = lambda: limiter
    assert fast.http.post("/", data={**GOOD, "csrf": "forged"}).status_code == 403
    assert fast.http.post("/", data={**GOOD, **fast.csrf()}).status_code == 303


@pytest.mark.parametrize("submission_id", ["nope", "x" * 65])
def test_no_receipt_for_an_unknown_or_non_form_submission(fast: FastApp, submission_id: str) -> None:
    fast.db.collections["raw"] = {"nope": {"_id": "nope", "source": "api"}}
    assert fast.http.get(f"/thanks/{submission_id}").status_code == 404
