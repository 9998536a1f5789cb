"""The submissions API's route logic, in process (see conftest): scopes, consent, idempotency,
problem details, bulk media types and upload slots."""

from __future__ import annotations

import pytest

from tests.web_app.routes.conftest import FastApp, is_problem
from web_app.accounts import AccountCache
from web_app.deps import get_accounts, get_upload_slots
from web_app.submissions import idempotent_id, owned_submission_id
from web_app.upload_slots import UploadSlots

GOOD = {"school_id": "1224", "sex": "F", "minority": "no", "ses": "1,5", "math_score": 12, "consent": True}
CSV = 'submission_id,school_id,ses,consent\nr1,1224,"1,5",yes\nr2,1225,2,no\n'


def test_one_record_is_stored_as_given_with_a_receipt(fast: FastApp) -> None:
    response = fast.http.post("/api/v1/submissions", json=GOOD, headers=fast.bearer("sam", ["submit"]))
    assert response.status_code == 201
    receipt = response.json()
    stored = fast.db.stored("raw")[receipt["submission_id"]]
    assert stored["ses"] == "1,5" and stored["math_score"] == 12 and stored["source"] == "api"
    assert receipt["already_received"] is False


@pytest.mark.parametrize(("scopes", "status"), [(None, 401), (["results:read"], 403), (["admin"], 201)])
def test_submitting_needs_the_submit_scope_or_admin(
    fast: FastApp, scopes: list[str] | None, status: int
) -> None:
    headers = fast.bearer("someone", scopes) if scopes is not None else {}
    response = fast.http.post("/api/v1/submissions", json=GOOD, headers=headers)
    assert response.status_code == status
    if status != 201:
        assert (
            is_problem(response, status) and response.headers["www-authenticate"] == 'Bearer scope="submit"'
        )


def test_a_token_counts_only_while_its_account_holds_the_scope(fast: FastApp) -> None:
    fast.app.dependency_overrides[get_accounts] = lambda: AccountCache(ttl=0)  # every request reads
    headers = fast.bearer("sam", ["submit"])
    fast.account("sam", ["results:read"])  # the account lost the scope after the token was made
    assert is_problem(fast.http.post("/api/v1/submissions", json=GOOD, headers=headers), 403)
    fast.account("sam", ["submit"], disabled=True)
    assert is_problem(fast.http.post("/api/v1/submissions", json=GOOD, headers=headers), 401)


def test_an_idempotency_key_makes_a_retry_harmless_and_a_reuse_an_error(fast: FastApp) -> None:
    headers = {**fast.bearer("sam", ["submit"]), "Idempotency-Key": "retry-1"}
    first = fast.http.post("/api/v1/submissions", json=GOOD, headers=headers)
    again = fast.http.post("/api/v1/submissions", json=GOOD, headers=headers)
    other = fast.http.post("/api/v1/submissions", json={**GOOD, "ses": "2"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["submission_id"] == again.json()["submission_id"] == idempotent_id("sam", "retry-1")
    assert again.json()["already_received"] is True
    assert is_problem(other, 422) and "different record" in other.json()["title"]
    assert len(fast.db.stored("raw")) == 1


@pytest.mark.parametrize("consent", [False, "no", "maybe"])
def test_without_consent_nothing_is_stored(fast: FastApp, consent: object) -> None:
    response = fast.http.post(
        "/api/v1/submissions", json={**GOOD, "consent": consent}, headers=fast.bearer("sam", ["submit"])
    )
    assert is_problem(response, 422) and "consent" in response.json()["title"]
    assert fast.db.stored("raw") == {}


def test_an_unknown_field_is_a_problem_naming_it(fast: FastApp) -> None:
    response = fast.http.post(
        "/api/v1/submissions", json={**GOOD, "shoe_size": 42}, headers=fast.bearer("sam", ["submit"])
    )
    assert is_problem(response, 422) and response.json()["errors"][0]["loc"][-1] == "shoe_size"


def test_the_db_api_down_is_a_503_problem_with_retry_after(fast: FastApp) -> None:
    headers = fast.bearer("sam", ["submit"])
    fast.http.post("/api/v1/submissions", json=GOOD, headers=headers)  # the account is read (cached)
    fast.db.down = True
    response = fast.http.post("/api/v1/submissions", json=GOOD, headers=headers)
    assert is_problem(response, 503) and "unavailable" in response.json()["title"]
    assert response.headers["retry-after"]


def test_a_csv_upload_stores_the_consented_rows_under_the_accounts_ids(fast: FastApp) -> None:
    headers = {**fast.bearer("sam", ["submit"]), "Content-Type": "text/csv"}
    report = fast.http.post("/api/v1/submissions/bulk", content=CSV, headers=headers).json()
    assert (report["received"], report["stored"], report["refused"]) == (2, 1, 1)
    assert report["problems"] == ["line 3: no consent: not stored"]
    assert list(fast.db.stored("raw")) == [owned_submission_id("sam", "r1")]
    again = fast.http.post("/api/v1/submissions/bulk", content=CSV, headers=headers).json()
    assert (again["stored"], again["already_stored"]) == (0, 1)


def test_a_bulk_upload_of_another_media_type_is_refused(fast: FastApp) -> None:
    headers = {**fast.bearer("sam", ["submit"]), "Content-Type": "text/xml"}
    response = fast.http.post("/api/v1/submissions/bulk", content="<a/>", headers=headers)
    assert is_problem(response, 415) and "text/xml" in response.json()["title"]


def test_a_bulk_upload_over_the_accounts_slots_is_refused_with_retry_after(fast: FastApp) -> None:
    slots = UploadSlots(total=4, per_account=1)
    fast.app.dependency_overrides[get_upload_slots] = lambda: slots
    headers = {**fast.bearer("sam", ["submit"]), "Content-Type": "text/csv"}
    with slots.taken("sam"):  # an upload of this account is in progress
        busy = fast.http.post("/api/v1/submissions/bulk", content=CSV, headers=headers)
    assert is_problem(busy, 429) and "an account may have 1 at once" in busy.json()["title"]
    assert busy.headers["retry-after"] == "10"
    assert fast.db.stored("raw") == {}
    assert fast.http.post("/api/v1/submissions/bulk", content=CSV, headers=headers).status_code == 200
