"""The schools routes' logic, in process (see conftest): admin scope, validation against the
contract's sectors, all-or-nothing CSV imports, the admin page's CSRF check."""

from __future__ import annotations

import pytest

from pipeline_lib.contract.fields import SECTORS
from tests.web_app.routes.conftest import FastApp, is_problem

SCHOOL = {"school_id": " 01224 ", "name": "Lakeside", "sector": "public", "size": 800}
CSV = "school_id,name,sector,size\n2305,Hill,catholic,400\n7890,Park,private,120\n"


def test_anyone_lists_the_schools_sorted_by_id(fast: FastApp) -> None:
    fast.db.collections["schools"] = {
        i: {"_id": i, "school_id": i, "name": f"S{i}", "sector": "public", "size": 10} for i in ("9", "1")
    }
    listed = fast.http.get("/api/v1/schools")
    assert listed.status_code == 200 and [s["school_id"] for s in listed.json()] == ["1", "9"]


def test_an_admin_adds_a_school_with_its_id_normalised(fast: FastApp) -> None:
    added = fast.http.post("/api/v1/schools", json=SCHOOL, headers=fast.bearer("ada", ["admin"]))
    replaced = fast.http.post("/api/v1/schools", json=SCHOOL, headers=fast.bearer("ada", ["admin"]))
    assert added.status_code == 201 and added.json() == {"stored": 1, "replaced": 0}
    assert replaced.json() == {"stored": 0, "replaced": 1}
    assert list(fast.db.stored("schools")) == ["1224"]
    assert [s["school_id"] for s in fast.http.get("/api/v1/schools").json()] == ["1224"]  # cache invalidated


def test_adding_a_school_needs_a_token_with_the_admin_scope(fast: FastApp) -> None:
    anonymous = fast.http.post("/api/v1/schools", json=SCHOOL)
    submitter = fast.http.post("/api/v1/schools", json=SCHOOL, headers=fast.bearer("sam", ["submit"]))
    assert is_problem(anonymous, 401) and anonymous.headers["www-authenticate"] == 'Bearer scope="admin"'
    assert is_problem(submitter, 403) and "admin" in submitter.json()["title"]
    assert fast.db.stored("schools") == {}


def test_the_sector_is_one_of_the_contracts(fast: FastApp) -> None:
    response = fast.http.post(
        "/api/v1/schools", json={**SCHOOL, "sector": "secret"}, headers=fast.bearer("ada", ["admin"])
    )
    assert is_problem(response, 422)
    (error,) = response.json()["errors"]
    assert error["loc"][-1] == "sector" and all(repr(s) in error["msg"] for s in SECTORS)


def test_the_api_schema_lists_the_contracts_sectors(fast: FastApp) -> None:
    schema = fast.http.get("/openapi.json").json()["components"]["schemas"]["SchoolIn"]
    assert schema["properties"]["sector"]["enum"] == list(SECTORS)


def test_a_csv_import_stores_every_row(fast: FastApp) -> None:
    headers = {**fast.bearer("ada", ["admin"]), "Content-Type": "text/csv; charset=utf-8"}
    response = fast.http.post("/api/v1/schools/bulk", content=CSV, headers=headers)
    assert response.json() == {"stored": 2, "replaced": 0}
    assert sorted(fast.db.stored("schools")) == ["2305", "7890"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (CSV + "1,Bad,secret,-1\n", "line 4: sector"),
        ("id,name\n1,x\n", "The header must be exactly"),
        (b"school_id,name,sector,size\n1,Z\xfcrich,public,1\n", "not UTF-8"),
    ],
)
def test_a_csv_import_with_a_bad_line_or_header_stores_nothing(fast: FastApp, body: str, needle: str) -> None:
    headers = {**fast.bearer("ada", ["admin"]), "Content-Type": "text/csv"}
    response = fast.http.post("/api/v1/schools/bulk", content=body, headers=headers)
    assert is_problem(response, 422) and needle in response.json()["title"]
    assert fast.db.stored("schools") == {}


def test_a_csv_import_must_say_it_is_csv(fast: FastApp) -> None:
    headers = {**fast.bearer("ada", ["admin"]), "Content-Type": "application/json"}
    response = fast.http.post("/api/v1/schools/bulk", content=CSV, headers=headers)
    assert is_problem(response, 415)


def test_the_schools_page_sends_a_signed_out_browser_to_the_login_page(fast: FastApp) -> None:
    response = fast.http.get("/schools")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/schools"


def test_the_schools_page_is_for_admins_only(fast: FastApp) -> None:
    fast.sign_in("rita", ["results:read"])
    assert fast.http.get("/schools").status_code == 403


def test_the_schools_form_without_its_csrf_token_stores_nothing(fast: FastApp) -> None:
    fast.sign_in("ada", ["admin"])
    fast.csrf()
    response = fast.http.post("/schools", data={**SCHOOL, "size": "300", "csrf": "forged"})
    assert response.status_code == 403 and "The form expired: try again." in response.text
    assert fast.db.stored("schools") == {}


def test_the_schools_form_stores_a_school_and_says_so(fast: FastApp) -> None:
    fast.sign_in("ada", ["admin"])
    response = fast.http.post("/schools", data={**SCHOOL, "size": "300", **fast.csrf()})
    assert response.status_code == 303 and response.headers["location"] == "/schools?saved=1&replaced=0"
    assert fast.db.stored("schools")["1224"]["size"] == 300
    assert "Saved: 1 new, 0 replaced." in fast.http.get(response.headers["location"]).text


def test_the_schools_form_explains_a_bad_entry(fast: FastApp) -> None:
    fast.sign_in("ada", ["admin"])
    response = fast.http.post("/schools", data={**SCHOOL, "sector": "secret", **fast.csrf()})
    assert response.status_code == 422 and "sector" in response.text
    assert fast.db.stored("schools") == {}
