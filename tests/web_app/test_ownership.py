"""Client-given ids belong to the account (or the form page) that sends them (issue 12).

- Two accounts may use the same bulk `submission_id`s: each account's rows are stored; a retry by
  the same account is still counted once.
- An upload cannot claim the id another account's `Idempotency-Key` or a form page's nonce turns
  into, so neither later submission is refused or answered with a false receipt.
- A form page used a second time with other answers (the Back button on a shared classroom PC)
  never gets a receipt for answers that were not stored; the public receipt page confirms form
  submissions only.
"""

from __future__ import annotations

import hashlib
import re

import httpx
import orjson
import pytest

from pipeline_lib.contract.users import hash_password
from tests.web_app.conftest import PASSWORD, WebStack
from web_app.submissions import idempotent_id, owned_submission_id

OTHER = "other-school"
FORM = {
    "school_id": "1224",
    "sex": "female",
    "minority": "no",
    "ses": "1,5",
    "math_score": "12",
    "consent": "yes",
}


@pytest.fixture
def other(stack: WebStack) -> dict[str, str]:
    """A second submitting account, from another school."""
    account = {"scopes": ["submit"], "password_hash": hash_password(PASSWORD), "disabled": False}
    stack.db.put_document("users", OTHER, account)
    return stack.auth(OTHER)


def _upload(stack: WebStack, headers: dict[str, str], rows: list[dict]) -> dict:
    body = b"\n".join(orjson.dumps(row) for row in rows)
    with stack.client() as http:
        response = http.post(
            "/api/v1/submissions/bulk",
            content=body,
            headers={**headers, "Content-Type": "application/x-ndjson"},
        )
    assert response.status_code == 200, response.text
    return response.json()


def _rows(math_scores: list[str]) -> list[dict]:
    return [
        {"submission_id": str(n), "school_id": "1224", "math_score": score, "consent": "yes"}
        for n, score in enumerate(math_scores, start=1)
    ]


def _form_page(http: httpx.Client) -> dict[str, str]:
    page = http.get("/").text
    return {name: re.search(rf'name="{name}" value="([^"]*)"', page).group(1) for name in ("csrf", "nonce")}  # type: ignore[union-attr]


def test_two_accounts_may_use_the_same_bulk_ids_and_both_are_stored(
    stack: WebStack, other: dict[str, str]
) -> None:
    mine = _upload(stack, stack.auth("submitter"), _rows(["10", "20"]))
    theirs = _upload(stack, other, _rows(["70", "80"]))
    assert (mine["stored"], mine["already_stored"]) == (2, 0)
    assert (theirs["stored"], theirs["already_stored"]) == (2, 0)
    stored = stack.db.scan("raw").to_pylist()
    assert sorted(r["math_score"] for r in stored) == ["10", "20", "70", "80"]
    assert len({r["submission_id"] for r in stored}) == 4


def test_an_accounts_retried_upload_is_counted_once(stack: WebStack, other: dict[str, str]) -> None:
    _upload(stack, stack.auth("submitter"), _rows(["10", "20"]))
    first = _upload(stack, other, _rows(["70", "80"]))
    again = _upload(stack, other, _rows(["70", "80"]))
    assert (first["stored"], again["stored"], again["already_stored"]) == (2, 0, 2)
    assert stack.db.count("raw") == 4


def test_an_upload_cannot_claim_another_accounts_idempotency_key(
    stack: WebStack, other: dict[str, str]
) -> None:
    claimed = idempotent_id("submitter", "order-7")  # what the key becomes, by the published rule
    _upload(stack, other, [{"submission_id": claimed, "school_id": "666", "consent": "yes"}])
    with stack.client() as http:
        response = http.post(
            "/api/v1/submissions",
            json={**FORM, "math_score": 12},
            headers={**stack.auth("submitter"), "Idempotency-Key": "order-7"},
        )
    assert response.status_code == 201, response.text
    assert stack.db.get("raw", response.json()["submission_id"])["school_id"] == "1224"
    assert stack.db.count("raw") == 2


def test_an_upload_cannot_claim_a_form_pages_receipt(stack: WebStack, other: dict[str, str]) -> None:
    with stack.client() as http:
        hidden = _form_page(http)  # seen by someone else at a shared PC
        claimed = "f" + hashlib.sha256(hidden["nonce"].encode()).hexdigest()[:31]
        _upload(stack, other, [{"submission_id": claimed, "school_id": "666", "consent": "yes"}])
        sent = http.post("/", data={**FORM, **hidden})
    assert sent.status_code == 303
    receipt = sent.headers["location"].removeprefix("/thanks/")
    assert stack.db.get("raw", receipt)["school_id"] == "1224"


def test_a_reused_form_page_with_other_answers_gets_no_false_receipt(stack: WebStack) -> None:
    with stack.client() as http:
        hidden = _form_page(http)
        first = http.post("/", data={**FORM, **hidden})
        second = http.post("/", data={**FORM, **hidden, "math_score": "88", "sex": "male"})
    assert first.status_code == 303
    assert second.status_code == 409, "the second student got the first student's receipt"
    assert "already sent" in second.text and 'value="88"' in second.text
    assert [r["math_score"] for r in stack.db.scan("raw").to_pylist()] == ["12"]


def test_a_refused_reused_page_comes_back_fresh_and_sends_a_new_submission(stack: WebStack) -> None:
    with stack.client() as http:
        hidden = _form_page(http)
        http.post("/", data={**FORM, **hidden})
        refused = http.post("/", data={**FORM, **hidden, "math_score": "88"})
        fresh_nonce = re.search(r'name="nonce" value="([^"]*)"', refused.text).group(1)  # type: ignore[union-attr]
        again = http.post("/", data={**FORM, **hidden, "math_score": "88", "nonce": fresh_nonce})
    assert refused.status_code == 409 and fresh_nonce != hidden["nonce"]
    assert again.status_code == 303
    receipt = again.headers["location"].removeprefix("/thanks/")
    assert stack.db.get("raw", receipt)["math_score"] == "88"
    assert stack.db.count("raw") == 2


def test_the_receipt_page_answers_for_form_submissions_only(stack: WebStack) -> None:
    """Bulk ids can be guessed (`<account>:1`); the public receipt page must not confirm them."""
    _upload(stack, stack.auth("submitter"), _rows(["10"]))
    with stack.client() as http:
        api = http.post("/api/v1/submissions", json=FORM, headers=stack.auth("submitter")).json()
        bulk_receipt = http.get(f"/thanks/{owned_submission_id('submitter', '1')}")
        api_receipt = http.get(f"/thanks/{api['submission_id']}")
    assert (bulk_receipt.status_code, api_receipt.status_code) == (404, 404)


def test_an_account_name_cannot_reach_into_another_accounts_ids() -> None:
    assert owned_submission_id("a:b", "c") != owned_submission_id("a", "b:c")
    assert owned_submission_id("a%3Ab", "c") != owned_submission_id("a:b", "c")
