"""The public form over HTTP (no browser): CSRF, errors in plain words, receipts, rate limit."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.store_locks import held_write_lock
from tests.web_app.conftest import WebStack

GOOD = {
    "school_id": "01224",
    "sex": "female",
    "minority": "no",
    "ses": "1,5",
    "math_score": "12",
    "age": "",
    "consent": "yes",
}


def _hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name}"
    return match.group(1)


def _open_form(http: httpx.Client) -> dict[str, str]:
    page = http.get("/").text
    return {"csrf": _hidden(page, "csrf"), "nonce": _hidden(page, "nonce")}


def test_the_form_is_generated_from_the_contract_with_labels_and_hints(stack: WebStack) -> None:
    with stack.client() as http:
        page = http.get("/").text
    for name in ("school_id", "sex", "minority", "ses", "math_score", "age", "consent"):
        assert f'name="{name}"' in page
    assert '<label for="ses">Socio-economic status index' in page
    assert 'inputmode="decimal"' in page and "decimal comma is fine" in page


def test_a_valid_form_gets_a_receipt_and_a_resend_gets_the_same_one(stack: WebStack) -> None:
    with stack.client() as http:
        hidden = _open_form(http)
        first = http.post("/", data={**GOOD, **hidden})
        resent = http.post("/", data={**GOOD, **hidden})
    assert first.status_code == 303 and first.headers["location"].startswith("/thanks/")
    assert resent.headers["location"] == first.headers["location"]
    receipt = first.headers["location"].removeprefix("/thanks/")
    stored = stack.db.get("raw", receipt)
    assert stored["school_id"] == "01224" and stored["ses"] == "1,5" and stored["source"] == "form"
    assert stack.db.count("raw") == 1


def test_answers_not_confirmed_in_time_come_back_to_send_again_and_are_stored_once(stack: WebStack) -> None:
    """The store is held past the web app's deadline: the student gets their page back, answers and
    nonce kept, with a plain notice; sending it again stores it, once."""
    with stack.client() as http:
        hidden = _open_form(http)
        with held_write_lock(stack.settings.data_dir / "store.sqlite3"):
            unconfirmed = http.post("/", data={**GOOD, **hidden})
        page = unconfirmed.text
        assert unconfirmed.status_code == 503
        assert "could not confirm that your answers were stored" in page
        assert _hidden(page, "nonce") == hidden["nonce"] and 'value="1,5"' in page
        resent = http.post("/", data={**GOOD, "csrf": _hidden(page, "csrf"), "nonce": _hidden(page, "nonce")})
        again = http.post("/", data={**GOOD, "csrf": _hidden(page, "csrf"), "nonce": _hidden(page, "nonce")})
    assert resent.status_code == 303 and again.headers["location"] == resent.headers["location"]
    assert stack.db.count("raw") == 1


def test_a_page_resent_after_the_clean_keeps_its_receipt_and_never_replaces_the_record(
    stack: WebStack,
) -> None:
    """The clean has moved the record (here to quarantine: the school is unknown). The same page
    sent again gets the same receipt, which still shows; sent with other answers (Back on a shared
    PC) it is refused, and the first student's record stays as it was."""
    from pipeline_lib.clean.pandas_job import run_clean_pandas

    with stack.client() as http:
        hidden = _open_form(http)
        first = http.post("/", data={**GOOD, **hidden})
        assert run_clean_pandas(stack.db, run_id="t").quarantined == 1
        resent = http.post("/", data={**GOOD, **_open_form(http), "nonce": hidden["nonce"]})
        receipt = http.get(first.headers["location"])
        other = http.post("/", data={**GOOD, **_open_form(http), "nonce": hidden["nonce"], "ses": "2"})
    assert first.status_code == 303 and resent.headers["location"] == first.headers["location"]
    assert receipt.status_code == 200
    assert other.status_code == 409 and "already sent once" in other.text
    submission_id = first.headers["location"].removeprefix("/thanks/")
    assert stack.db.count("raw") == 0
    assert stack.db.get("quarantine", submission_id)["ses"] == "1,5"


def test_a_page_the_clean_merged_as_a_resubmission_keeps_its_receipt(stack: WebStack) -> None:
    """Two pages with the same student and answers: the clean keeps one record and merges the
    other into it. The merged page sent again gets its receipt, and the receipt page still shows
    (it used to say 'no submission with this receipt number', inviting a third submission)."""
    import pandas as pd

    from pipeline_lib.clean.pandas_job import run_clean_pandas

    school = pd.DataFrame([{"school_id": "1224", "name": "North", "sector": "public", "size": 300}])
    stack.db.write("schools", school, mode="upsert", key="school_id")
    same = {**GOOD, "student_ref": "S-1"}
    with stack.client() as http:
        pages = [_open_form(http), _open_form(http)]
        sent = [http.post("/", data={**same, **page}) for page in pages]
        report = run_clean_pandas(stack.db, run_id="t")
        assert (report.cleaned, report.duplicates_collapsed) == (1, 1)
        resent = http.post("/", data={**same, **_open_form(http), "nonce": pages[1]["nonce"]})
        receipts = [http.get(response.headers["location"]) for response in sent]
    assert resent.headers["location"] == sent[1].headers["location"]
    assert [r.status_code for r in receipts] == [200, 200]
    assert stack.db.count("raw") == 0 and stack.db.count("cleaned") == 1


def test_wrong_answers_are_explained_next_to_their_fields_and_kept(stack: WebStack) -> None:
    with stack.client() as http:
        hidden = _open_form(http)
        response = http.post(
            "/", data={**GOOD, **hidden, "ses": "abc", "math_score": "500", "sex": "", "consent": ""}
        )
    assert response.status_code == 422
    page = response.text
    assert 'id="ses-error">Enter a number, like 12 or 3,5.' in page
    assert 'id="math_score-error">Enter a number from -10 to 100.' in page
    assert 'id="sex-error">This is required.' in page
    assert "without your consent nothing can be stored" in page
    assert 'value="abc"' in page and 'value="500"' in page
    assert stack.db.count("raw") == 0


def test_a_post_without_the_csrf_token_is_refused(stack: WebStack) -> None:
    with stack.client() as http:
        hidden = _open_form(http)
        forged = http.post("/", data={**GOOD, "nonce": hidden["nonce"], "csrf": "forged"})
    assert forged.status_code == 403 and "sent from elsewhere" in forged.text
    assert stack.db.count("raw") == 0


@pytest.mark.parametrize("web_settings", [{"form_rate_limit": "2/minute"}], indirect=True)
def test_form_posts_are_rate_limited_per_client(stack: WebStack) -> None:
    with stack.client() as http:
        statuses = []
        for _ in range(3):
            hidden = _open_form(http)
            statuses.append(http.post("/", data={**GOOD, **hidden}).status_code)
    assert statuses == [303, 303, 429]
    assert stack.db.count("raw") == 2


def test_an_oversized_form_is_refused(stack: WebStack) -> None:
    with stack.client() as http:
        hidden = _open_form(http)
        response = http.post("/", data={**GOOD, **hidden, "student_ref": "x" * 100_000})
    assert response.status_code == 413
    assert stack.db.count("raw") == 0
