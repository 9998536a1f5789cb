"""The submissions API through a real uvicorn and a real db-api."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.store_locks import held_write_lock
from tests.web_app.conftest import WebStack
from web_app.submissions import owned_submission_id

GOOD = {"school_id": "1224", "sex": "F", "minority": "no", "ses": "1,5", "math_score": 12, "consent": True}


def test_one_submission_is_stored_as_given_with_a_receipt(stack: WebStack) -> None:
    with stack.client() as http:
        response = http.post("/api/v1/submissions", json=GOOD, headers=stack.auth("submitter"))
    assert response.status_code == 201
    receipt = response.json()
    stored = stack.db.get("raw", receipt["submission_id"])
    assert stored["ses"] == "1,5" and stored["math_score"] == 12 and stored["source"] == "api"
    assert stored["submission_id"] == receipt["submission_id"]


def test_an_idempotency_key_makes_a_retry_harmless(stack: WebStack) -> None:
    headers = {**stack.auth("submitter"), "Idempotency-Key": "retry-1"}
    with stack.client() as http:
        first = http.post("/api/v1/submissions", json=GOOD, headers=headers)
        again = http.post("/api/v1/submissions", json=GOOD, headers=headers)
        different = http.post("/api/v1/submissions", json={**GOOD, "ses": "2"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["submission_id"] == first.json()["submission_id"]
    assert again.json()["already_received"] is True
    assert different.status_code == 422 and "different record" in different.json()["title"]
    assert stack.db.count("raw") == 1


def _known_school(stack: WebStack) -> None:
    """School 1224 in `schools`, so that the clean keeps its records in `cleaned`."""
    import pandas as pd

    school = pd.DataFrame([{"school_id": "1224", "name": "North", "sector": "public", "size": 300}])
    stack.db.write("schools", school, mode="upsert", key="school_id")


def test_an_idempotency_key_still_holds_once_the_record_is_cleaned(stack: WebStack) -> None:
    """After the clean has moved the record from raw to cleaned, a retry with its key is still
    'already received', and a different record under that key is still refused: it used to be
    stored and replace the cleaned record."""
    from pipeline_lib.clean.pandas_job import run_clean_pandas

    _known_school(stack)
    headers = {**stack.auth("submitter"), "Idempotency-Key": "before-the-clean"}
    with stack.client() as http:
        first = http.post("/api/v1/submissions", json=GOOD, headers=headers)
        assert run_clean_pandas(stack.db, run_id="t").cleaned == 1
        again = http.post("/api/v1/submissions", json=GOOD, headers=headers)
        different = http.post("/api/v1/submissions", json={**GOOD, "ses": "2"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["submission_id"] == first.json()["submission_id"]
    assert again.json()["already_received"] is True
    assert again.json()["received_at"] == first.json()["received_at"]
    assert different.status_code == 422 and "different record" in different.json()["title"]
    assert stack.db.count("raw") == 0
    assert stack.db.get("cleaned", first.json()["submission_id"])["ses"] == 1.5


def test_a_resubmission_the_clean_merged_is_still_received_once(stack: WebStack) -> None:
    """Two keys, the same student and answers: the clean keeps one record and merges the other
    into it. A retry of the merged one is 'already received' and a different record under its key
    is refused; it used to be stored again, and counted twice after the next clean."""
    from pipeline_lib.clean.pandas_job import run_clean_pandas

    _known_school(stack)
    same = {**GOOD, "student_ref": "S-1"}
    auth = stack.auth("submitter")
    with stack.client() as http:
        first = http.post("/api/v1/submissions", json=same, headers={**auth, "Idempotency-Key": "k1"})
        second = http.post("/api/v1/submissions", json=same, headers={**auth, "Idempotency-Key": "k2"})
        assert (first.status_code, second.status_code) == (201, 201)
        report = run_clean_pandas(stack.db, run_id="t1")
        assert (report.cleaned, report.quarantined, report.duplicates_collapsed) == (1, 0, 1)
        again = http.post("/api/v1/submissions", json=same, headers={**auth, "Idempotency-Key": "k2"})
        changed = {**same, "ses": "2"}
        different = http.post("/api/v1/submissions", json=changed, headers={**auth, "Idempotency-Key": "k2"})
    assert again.status_code == 200 and again.json()["already_received"] is True
    assert again.json()["submission_id"] == second.json()["submission_id"]
    assert different.status_code == 422
    assert stack.db.count("raw") == 0
    assert run_clean_pandas(stack.db, run_id="t2").records_in == 0
    assert stack.db.count("cleaned") == 1


def test_concurrent_submissions_and_retries_each_get_their_own_answer(stack: WebStack) -> None:
    """Submissions that arrive together share db-api calls: each still gets its own receipt, and
    retries of one Idempotency-Key sent at the same moment store one record."""
    auth = stack.auth("submitter")

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
            fresh = [
                http.post("/api/v1/submissions", json={**GOOD, "math_score": i}, headers=auth)
                for i in range(40)
            ]
            retries = [
                http.post(
                    "/api/v1/submissions", json=GOOD, headers={**auth, "Idempotency-Key": "same-moment"}
                )
                for _ in range(10)
            ]
            return await asyncio.gather(*fresh, *retries)

    responses = asyncio.run(post_all())
    fresh, retries = responses[:40], responses[40:]
    assert [r.status_code for r in fresh] == [201] * 40
    ids = [r.json()["submission_id"] for r in fresh]
    assert len(set(ids)) == 40
    assert [stack.db.get("raw", i)["math_score"] for i in ids] == list(range(40))
    assert sorted(r.status_code for r in retries) == [200] * 9 + [201]
    assert len({r.json()["submission_id"] for r in retries}) == 1
    assert sum(r.json()["already_received"] for r in retries) == 9
    assert stack.db.count("raw") == 41


@pytest.mark.parametrize("consent", [False, "no", "maybe"])
def test_without_consent_nothing_is_stored(stack: WebStack, consent: object) -> None:
    with stack.client() as http:
        response = http.post(
            "/api/v1/submissions", json={**GOOD, "consent": consent}, headers=stack.auth("submitter")
        )
    assert response.status_code == 422 and "consent" in response.json()["title"]
    assert stack.db.count("raw") == 0


def test_errors_are_problem_details(stack: WebStack) -> None:
    with stack.client() as http:
        response = http.post(
            "/api/v1/submissions", json={**GOOD, "shoe_size": 42}, headers=stack.auth("submitter")
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422 and body["errors"][0]["loc"][-1] == "shoe_size"


def test_a_whole_number_beyond_64_bits_is_refused_by_name(stack: WebStack) -> None:
    """BSON stores 64-bit integers: a bigger one is the submitter's error (it was a 500)."""
    with stack.client() as http:
        response = http.post(
            "/api/v1/submissions", json={**GOOD, "school_id": 10**20}, headers=stack.auth("submitter")
        )
        widest = http.post(
            "/api/v1/submissions", json={**GOOD, "absences": 2**63 - 1}, headers=stack.auth("submitter")
        )
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["loc"][-1] == "school_id" and "as text" in error["msg"]
    assert (
        widest.status_code == 201
        and stack.db.get("raw", widest.json()["submission_id"])["absences"] == 2**63 - 1
    )
    assert stack.db.count("raw") == 1


CSV = (
    "school_id,sex,minority,ses,math_score,consent\n"
    '1224,F,no,"1,5",12,yes\n'
    "1224,boy,yes,0.3,40,no\n"
    '1225,M,no,"multi\nline",7,Yes\n'
    "1225,M,no,1\n"
)


def test_a_csv_upload_stores_consented_rows_and_reports_the_rest_by_line(stack: WebStack) -> None:
    headers = {**stack.auth("submitter"), "Content-Type": "text/csv"}
    with stack.client() as http:
        report = http.post("/api/v1/submissions/bulk", content=CSV, headers=headers).json()
    assert (report["received"], report["stored"], report["refused"]) == (4, 2, 2)
    assert sorted(report["problems"]) == ["line 3: no consent: not stored", "line 6: 4 values for 6 columns"]
    rows = stack.db.scan("raw").to_pylist()
    assert sorted(r["ses"] for r in rows) == ["1,5", "multi\nline"]
    assert {r["source"] for r in rows} == {"bulk"}


def test_a_streamed_ndjson_upload_with_ids_can_be_retried(stack: WebStack) -> None:
    lines = [
        '{"submission_id": "s1", "school_id": "1", "ses": 1.5, "consent": true}',
        '{"submission_id": "s2", "school_id": "2", "ses": "2,5", "consent": "yes"}',
        '{"submission_id": "s3", "nested": {"a": 1}, "consent": true}',
        "not json",
    ]

    def body() -> Iterator[bytes]:  # sent chunked, in pieces that split lines
        text = "\n".join(lines).encode()
        for start in range(0, len(text), 7):
            yield text[start : start + 7]

    headers = {**stack.auth("submitter"), "Content-Type": "application/x-ndjson"}
    with stack.client() as http:
        first = http.post("/api/v1/submissions/bulk", content=body(), headers=headers).json()
        again = http.post("/api/v1/submissions/bulk", content=body(), headers=headers).json()
    assert (first["stored"], first["refused"]) == (2, 2)
    assert (again["stored"], again["already_stored"]) == (0, 2)
    assert stack.db.get("raw", owned_submission_id("submitter", "s1"))["ses"] == "1.5"
    assert stack.db.count("raw") == 2


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("school_id,colour,consent\n1,red,yes\n", "unknown columns"),
        ("school_id,ses\n1,2\n", "consent column"),
        ("", "empty"),
    ],
)
def test_an_unreadable_upload_stores_nothing(stack: WebStack, body: str, needle: str) -> None:
    headers = {**stack.auth("submitter"), "Content-Type": "text/csv"}
    with stack.client() as http:
        response = http.post("/api/v1/submissions/bulk", content=body, headers=headers)
    assert response.status_code == 422 and needle in response.json()["title"]
    assert stack.db.count("raw") == 0


def test_a_non_utf8_upload_and_an_unknown_media_type_are_refused(stack: WebStack) -> None:
    headers = stack.auth("submitter")
    with stack.client() as http:
        latin = http.post(
            "/api/v1/submissions/bulk",
            content="school_id,consent\nZürich,yes\n".encode("latin-1"),
            headers={**headers, "Content-Type": "text/csv"},
        )
        xml = http.post(
            "/api/v1/submissions/bulk", content="<a/>", headers={**headers, "Content-Type": "text/xml"}
        )
    assert latin.status_code == 422 and "UTF-8" in latin.json()["title"]
    assert xml.status_code == 415
    assert stack.db.count("raw") == 0


@pytest.mark.parametrize("key", ["slow-1", None])
def test_a_record_not_confirmed_in_time_is_not_stored_and_the_503_says_how_to_retry(
    stack: WebStack, key: str | None
) -> None:
    """The store is held past the web app's 5 s deadline: the client is told the record may not
    be stored and how to retry safely; the db-api withdrew it, so the retry stores it once."""
    headers = {**stack.auth("submitter"), **({"Idempotency-Key": key} if key else {})}
    with stack.client() as http:
        with held_write_lock(stack.settings.data_dir / "store.sqlite3"):
            unconfirmed = http.post("/api/v1/submissions", json=GOOD, headers=headers)
        retry = http.post("/api/v1/submissions", json=GOOD, headers=headers)
    assert unconfirmed.status_code == 503 and unconfirmed.headers["retry-after"]
    title = unconfirmed.json()["title"]
    assert "may not be stored" in title
    assert ("same Idempotency-Key" if key else "sending it again may store it twice") in title
    assert retry.status_code == 201  # not 200: the first was never stored
    assert stack.db.count("raw") == 1


def test_the_db_api_down_means_503_with_a_clear_message(stack: WebStack) -> None:
    stack.db_api.stop(grace=0)
    with stack.client() as http:
        response = http.post("/api/v1/submissions", json=GOOD, headers=stack.auth_offline("submitter"))
        ready = http.get("/readyz")
        alive = http.get("/healthz")
    assert response.status_code == 503 and "unavailable" in response.json()["title"]
    assert response.headers["retry-after"]
    assert ready.status_code == 503 and alive.status_code == 200
