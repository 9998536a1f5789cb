"""Schools (admins manage, everyone reads) and results (readers, groups under k suppressed)."""

from __future__ import annotations

import datetime as dt
import time

from pipeline_lib.process.results import SUMMARY_LEFT_OUT, ChartSpec, ResultDocument, ResultTable
from tests.db_streams import stalled_writes
from tests.processes import wait_for
from tests.web_app.conftest import PASSWORD, WebStack


def test_admins_add_and_import_schools_and_anyone_lists_them(stack: WebStack) -> None:
    school = {"school_id": " 01224 ", "name": "Lakeside", "sector": "public", "size": 800}
    csv = "school_id,name,sector,size\n2305,Hill,catholic,400\n7890,Park,private,120\n"
    with stack.client() as http:
        added = http.post("/api/v1/schools", json=school, headers=stack.auth("admin"))
        refused = http.post("/api/v1/schools", json=school, headers=stack.auth("submitter"))
        imported = http.post(
            "/api/v1/schools/bulk", content=csv, headers={**stack.auth("admin"), "Content-Type": "text/csv"}
        )
        listed = http.get("/api/v1/schools").json()
    assert added.status_code == 201 and refused.status_code == 403
    assert imported.json() == {"stored": 2, "replaced": 0}
    assert [s["school_id"] for s in listed] == ["1224", "2305", "7890"]


def test_a_school_import_with_one_bad_line_imports_nothing(stack: WebStack) -> None:
    csv = "school_id,name,sector,size\n2305,Hill,catholic,400\n7890,Park,secret,-1\n"
    with stack.client() as http:
        response = http.post(
            "/api/v1/schools/bulk", content=csv, headers={**stack.auth("admin"), "Content-Type": "text/csv"}
        )
    assert response.status_code == 422 and "line 3" in response.json()["title"]
    assert stack.db.count("schools") == 0


def test_a_school_row_with_more_or_fewer_values_than_the_header_imports_nothing(stack: WebStack) -> None:
    """An extra value was dropped and the shifted row stored (review)."""
    for row, needle in (("1,a,public,2,extra", "5 values"), ("1,a,public", "3 values")):
        with stack.client() as http:
            response = http.post(
                "/api/v1/schools/bulk",
                content=f"school_id,name,sector,size\n2305,Hill,catholic,400\n{row}\n",
                headers={**stack.auth("admin"), "Content-Type": "text/csv"},
            )
        assert response.status_code == 422, response.text
        assert "line 3" in response.json()["title"] and needle in response.json()["title"]
    assert stack.db.count("schools") == 0


def test_a_school_import_of_too_many_rows_is_refused_however_bad_they_are(stack: WebStack) -> None:
    """Rows that failed their check were not counted, so 5 MB of them were all validated while the
    event loop waited (4.3 s in a review); now every row counts and the checks stop after 20 problems."""
    rows = "".join(f"{i},x,nowhere,-1\n" for i in range(10_001))
    with stack.client() as http:
        response = http.post(
            "/api/v1/schools/bulk",
            content="school_id,name,sector,size\n" + rows,
            headers={**stack.auth("admin"), "Content-Type": "text/csv"},
        )
    title = response.json()["title"]
    assert response.status_code == 422 and "Nothing was imported" in title
    assert title.count("line ") == 20 and "more problems" in title


def _result(key: str, sizes: list[int], n_input: int = 100) -> dict:
    table = ResultTable(
        name="by_sector",
        title="Mean math score by sector",
        columns=["sector", "n", "mean"],
        rows=[[f"sector{i}", n, 10.0 + i] for i, n in enumerate(sizes)],
        label_columns=["sector"],
    )
    doc = ResultDocument(
        key=key,
        title="Math by sector",
        analysis="descriptives",
        scope="sector",
        run_id="run-42",
        computed_at=dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.UTC),
        n_input=n_input,
        tables=[table],
        chart=ChartSpec(table="by_sector", x="sector", y="mean"),
    )
    return doc.model_dump(mode="json")


def test_results_api_suppresses_small_groups(stack: WebStack) -> None:
    stack.db.put_document("processed", "descriptives:sector", _result("descriptives:sector", [40, 3]))
    with stack.client() as http:
        index = http.get("/api/v1/results", headers=stack.auth("reader")).json()
        one = http.get("/api/v1/results/descriptives:sector", headers=stack.auth("reader")).json()
        missing = http.get("/api/v1/results/nope", headers=stack.auth("reader"))
    assert [r["key"] for r in index] == ["descriptives:sector"]
    assert one["tables"][0]["rows"] == [["sector0", 40, 10.0], ["sector1", None, None]]
    assert one["tables"][0]["suppressed"] == [False, True]
    assert one["run_id"] == "run-42" and one["k_min_group"] == 5
    assert missing.status_code == 404


def test_the_results_page_needs_a_login_then_links_to_each_result_s_tables_and_chart(stack: WebStack) -> None:
    stack.db.put_document("processed", "descriptives:sector", _result("descriptives:sector", [40, 3]))
    with stack.client() as http:
        assert http.get("/results").headers["location"] == "/login?next=/results"
        login_page = http.get("/login?next=/results").text
        csrf = login_page.split('name="csrf" value="')[1].split('"')[0]
        signed_in = http.post(
            "/login", data={"username": "reader", "password": PASSWORD, "csrf": csrf, "next": "/results"}
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/results"
        index = http.get("/results").text
        page = http.get("/results/descriptives:sector").text
    assert '<a href="/results/descriptives:sector">Math by sector</a>' in index
    assert "run <code>run-42</code>" in index and "<table" not in index
    assert "Math by sector" in page and "run <code>run-42</code>" in page
    assert "<em>suppressed</em>" in page and "<svg" in page and "<rect" in page


def test_a_wrong_password_on_the_login_page_is_explained(stack: WebStack) -> None:
    with stack.client() as http:
        csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        response = http.post("/login", data={"username": "reader", "password": "nope", "csrf": csrf})
    assert response.status_code == 401 and "Incorrect username or password" in response.text


def test_long_tables_are_paged_and_failures_are_said(stack: WebStack) -> None:
    import datetime as dt

    from pipeline_lib.process.results import ResultDocument, ResultTable

    rows = [[f"S{i:04d}", 20, 50.0 + i / 100] for i in range(300)]
    long = ResultDocument(
        key="descriptives:by_school", title="By school", analysis="descriptives", run_id="p-1",
        computed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), n_input=6000,
        tables=[ResultTable(name="statistics", title="Per school", columns=["school_id", "n", "mean"],
                            rows=rows, label_columns=["school_id"])],
    )  # fmt: skip
    failed = ResultDocument(
        key="mixedlm:null", title="Null model", analysis="mixedlm", run_id="p-1",
        computed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), n_input=6000, status="failed",
        error="no optimizer gave a usable REML fit",
    )  # fmt: skip
    for doc in (long, failed):
        stack.db.put_document("processed", doc.key, doc.model_dump(mode="json"))
    with stack.client() as http:
        csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        http.post("/login", data={"username": "reader", "password": PASSWORD, "csrf": csrf})
        index = http.get("/results").text
        page = http.get("/results/descriptives:by_school").text
        last = http.get("/results/descriptives:by_school?page=6").text
        table = http.get("/results/descriptives:by_school/tables/statistics.csv").text
        whole = http.get("/api/v1/results/descriptives:by_school", headers=stack.auth("reader")).json()
    assert "S0049" in page and "S0050" not in page and "Rows 1 to 50 of 300" in page
    assert "S0250" in last and "S0249" not in last and "Next rows" not in last
    assert "<svg" not in page  # 300 bars would not be a chart anyone can read
    assert "did not give a result in this run: no optimizer gave a usable REML fit" in index
    assert len(whole["tables"][0]["rows"]) == 300 and len(table.splitlines()) == 301


def test_a_reader_gets_no_summary_written_from_figures_the_tables_hide(stack: WebStack) -> None:
    """The summary is written from the computed figures: a reader got the mean of a group its table
    hid (privacy review). Analysts still get it."""
    doc = _result("descriptives:by_sector", [40, 3])
    doc["summary"] = "Mean math score by sector ranges from 10.0 (sector0) to 11.0 (sector1)."
    stack.db.put_document("processed", "descriptives:by_sector", doc)
    with stack.client() as http:
        reader = http.get("/api/v1/results/descriptives:by_sector", headers=stack.auth("reader")).json()
        csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        http.post("/login", data={"username": "reader", "password": PASSWORD, "csrf": csrf})
        page = http.get("/results/descriptives:by_sector")
        analyst = http.get("/api/v1/results/descriptives:by_sector", headers=stack.auth("analyst")).json()
    assert reader["summary"] == SUMMARY_LEFT_OUT
    assert page.status_code == 200 and "11.0" not in page.text and "summary is left out" in page.text
    assert analyst["summary"] == doc["summary"]


def test_a_school_written_while_the_db_apis_streams_are_all_taken_is_503_not_413(stack: WebStack) -> None:
    """The db-api refuses a stream beyond its slots with RESOURCE_EXHAUSTED, as it refuses data
    too large: a school import during a busy run was answered "The data is too large" (413,
    not worth retrying) instead of busy, try again (review)."""
    school = {"school_id": "1224", "name": "Lakeside", "sector": "public", "size": 800}
    # One more than the default max_streams: once one is refused, the other 16 hold every slot.
    with stalled_writes(stack.db_api.port, 17) as (calls, _):
        wait_for(lambda: any(call.done() for call in calls), 30, "a stream refused")
        with stack.client() as http:
            response = http.post("/api/v1/schools", json=school, headers=stack.auth("admin"))
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] and "busy" in response.json()["title"], response.json()
    assert stack.db.count("schools") == 0
    with stack.client() as http:  # and once they are free again, the same request stores it
        deadline = time.monotonic() + 10
        while (
            again := http.post("/api/v1/schools", json=school, headers=stack.auth("admin"))
        ).status_code == 503:
            assert time.monotonic() < deadline, again.text
            time.sleep(0.1)
    assert again.status_code == 201, again.text


def test_results_too_large_to_list_at_once_are_a_server_fault_not_413(stack: WebStack) -> None:
    """Result documents under the 16 MiB limit each but over 64 MiB together: listing them was one
    answer gRPC refused once built (90 MB in memory), and the app told every reader 413 "The data
    is too large", as if their request were, with gRPC's internals as the detail (audit)."""
    padding = "x" * (14 << 20)
    for i in range(5):
        stack.db.put_document("processed", f"big:{i}", {"key": f"big:{i}", "padding": padding})
    with stack.client() as http:
        response = http.get("/api/v1/results", headers=stack.auth("analyst"))
    assert response.status_code == 502, response.text[:300]
    problem = response.json()
    assert "too large" in problem["title"] and "ask for fewer" in problem["detail"], problem
    assert "Sent message larger than max" not in response.text
