"""The results routes' logic, in process (see conftest): the read scope, suppression of groups
under k, analyst-only tables, freshness, the page and its warnings."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline_lib.process.results import (
    ChartSpec,
    DocumentProtection,
    HeldDocument,
    HeldRow,
    ResultDocument,
    ResultTable,
    TableProtection,
    suppress,
)
from tests.web_app.routes.conftest import FastApp, is_problem
from web_app.deps import get_settings, page_user
from web_app.security import TokenClaims

KEY = "descriptives:sector"


def _put(fast: FastApp, doc: ResultDocument | dict) -> None:
    raw = doc.model_dump(mode="json") if isinstance(doc, ResultDocument) else doc
    fast.db.collections.setdefault("processed", {})[raw["key"]] = {**raw, "_id": raw["key"]}


def _result(
    sizes: list[int], *, age: dt.timedelta = dt.timedelta(minutes=5), run_id: str = "run-42"
) -> ResultDocument:
    public = ResultTable(
        name="by_sector",
        title="Mean math score by sector",
        columns=["sector", "n", "mean"],
        rows=[[f"sector{i}", n, 10.0 + i] for i, n in enumerate(sizes)],
        label_columns=["sector"],
    )
    private = ResultTable(name="detail", title="For analysts", columns=["n"], rows=[[50]], audience="analyst")
    return ResultDocument(
        key=KEY,
        title="Math by sector",
        analysis="descriptives",
        scope="sector",
        run_id=run_id,
        computed_at=dt.datetime.now(dt.UTC) - age,
        n_input=100,
        tables=[public, private],
        chart=ChartSpec(table="by_sector", x="sector", y="mean"),
    )


@pytest.mark.parametrize(("scopes", "status"), [(None, 401), (["submit"], 403), (["results:read"], 200)])
def test_results_need_the_read_scope(fast: FastApp, scopes: list[str] | None, status: int) -> None:
    _put(fast, _result([40]))
    headers = fast.bearer("someone", scopes) if scopes is not None else {}
    for path in ("/api/v1/results", f"/api/v1/results/{KEY}"):
        response = fast.http.get(path, headers=headers)
        assert response.status_code == status
        if status != 200:
            assert is_problem(response, status)


def test_a_reader_sees_groups_under_k_blanked_and_no_analyst_tables(fast: FastApp) -> None:
    _put(fast, _result([40, 3]))
    one = fast.http.get(f"/api/v1/results/{KEY}", headers=fast.bearer("rita", ["results:read"])).json()
    (table,) = one["tables"]
    assert table["rows"] == [["sector0", 40, 10.0], ["sector1", None, None]]
    assert table["suppressed"] == [False, True]
    assert one["k_min_group"] == 5 and one["freshness"]["run_id"] == "run-42"


def test_an_analyst_also_sees_the_analyst_tables_but_not_small_groups(fast: FastApp) -> None:
    _put(fast, _result([40, 3]))
    headers = fast.bearer("anna", ["results:read", "analyst"])
    one = fast.http.get(f"/api/v1/results/{KEY}", headers=headers).json()
    assert [t["name"] for t in one["tables"]] == ["by_sector", "detail"]
    assert one["tables"][0]["suppressed"] == [False, True]


def test_the_index_skips_documents_it_cannot_read(fast: FastApp) -> None:
    _put(fast, _result([40]))
    _put(fast, {"key": "broken:doc", "title": "no run id"})
    index = fast.http.get("/api/v1/results", headers=fast.bearer("rita", ["results:read"])).json()
    assert [r["key"] for r in index] == [KEY]
    assert index[0]["freshness"]["stale"] is False


@pytest.mark.parametrize(("key", "status"), [("nope", 404), ("broken:doc", 404), ("bad key!", 422)])
def test_a_missing_unreadable_or_malformed_key_is_a_problem(fast: FastApp, key: str, status: int) -> None:
    _put(fast, {"key": "broken:doc", "title": "no run id"})
    response = fast.http.get(f"/api/v1/results/{key}", headers=fast.bearer("rita", ["results:read"]))
    assert is_problem(response, status)


def test_figures_older_than_the_stale_after_setting_are_marked_stale(fast: FastApp) -> None:
    settings = fast.settings.model_copy(update={"stale_after": dt.timedelta(hours=1)})
    fast.app.dependency_overrides[get_settings] = lambda: settings
    _put(fast, _result([40], age=dt.timedelta(days=2)))
    one = fast.http.get(f"/api/v1/results/{KEY}", headers=fast.bearer("rita", ["results:read"])).json()
    assert one["freshness"]["stale"] is True and one["freshness"]["stale_after_source"] == "setting"
    assert one["freshness"]["warnings"]


def test_the_results_page_sends_a_signed_out_browser_to_the_login_page(fast: FastApp) -> None:
    response = fast.http.get("/results")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/results"


def test_the_results_page_shows_tables_a_chart_and_a_failed_runs_warning(fast: FastApp) -> None:
    fast.app.dependency_overrides[page_user] = lambda: TokenClaims("rita", frozenset({"results:read"}))
    _put(fast, _result([40, 3], run_id="process-20261129T101500Z-3fa9c1"))
    failed = {
        "run_id": "clean-20261129T111500Z-aaaaaa",
        "notebook": "clean",
        "status": "failed",
        "started_at": "2026-11-29T11:15:00+00:00",
        "ended_at": "2026-11-29T11:16:00+00:00",
        "code_version": "test",
        "host": "test",
    }
    fast.db.collections["runs"] = {failed["run_id"]: {**failed, "_id": failed["run_id"]}}
    page = fast.http.get("/results")
    assert page.status_code == 200
    assert "Math by sector" in page.text and "<em>suppressed</em>" in page.text
    assert "<svg" in page.text and "<rect" in page.text
    assert "The latest clean run (clean-20261129T111500Z-aaaaaa) failed" in page.text
    assert "For analysts" not in page.text


def _protected(withheld: list[str] | None = None) -> ResultDocument:
    doc = _result([40, 3, 30, 45])
    guard = TableProtection(
        hidden={1: "small", 2: "complementary"},
        held={
            3: HeldRow(values=["sector3", 44, 12.5], published_at=dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC))
        },
    )
    record = DocumentProtection(k=5, tables={"by_sector": guard}, withheld=withheld or [])
    return doc.model_copy(update={"protection": record})


def test_the_api_and_the_page_say_why_each_row_is_hidden_or_not_updated(fast: FastApp) -> None:
    _put(fast, _protected())
    one = fast.http.get(f"/api/v1/results/{KEY}", headers=fast.bearer("rita", ["results:read"])).json()
    (table,) = one["tables"]
    assert table["rows"] == [
        ["sector0", 40, 10.0],
        ["sector1", None, None],
        ["sector2", None, None],
        ["sector3", 44, 12.5],
    ]
    assert table["notes"] == [
        None,
        "fewer than 5 students",
        "hidden so others cannot be derived",
        "not updated: fewer than 5 students changed since 2026-11-29 06:00 UTC",
    ]
    fast.app.dependency_overrides[page_user] = lambda: TokenClaims("rita", frozenset({"results:read"}))
    page = fast.http.get("/results").text
    assert "hidden so others cannot be derived" in page and "fewer than 5 students" in page
    assert "not updated: fewer than 5 students changed since 2026-11-29 06:00 UTC" in page


def test_a_withheld_result_shows_why_and_no_figures_but_analysts_see_them_exact(fast: FastApp) -> None:
    _put(fast, _protected(["s(mean) of sector1 can be narrowed to [9.9, 10.1]"]))
    one = fast.http.get(f"/api/v1/results/{KEY}", headers=fast.bearer("rita", ["results:read"])).json()
    assert one["tables"] == [] and one["withheld"].startswith("withheld:") and "9.9" not in one["withheld"]
    exact = fast.http.get(
        f"/api/v1/results/{KEY}", headers=fast.bearer("anna", ["results:read", "analyst"])
    ).json()
    assert (
        exact["exact"]
        and exact["tables"][0]["rows"][2] == ["sector2", 30, 12.0]
        and "9.9" in exact["withheld"]
    )


def _model(estimate: float, *, n_input: int, run_id: str) -> ResultDocument:
    fixed = ResultTable(
        name="fixed", title="Fixed effects", columns=["term", "estimate"], rows=[["Intercept", estimate]]
    )
    return ResultDocument(
        key="mixedlm:null_model",
        title="Null model",
        analysis="mixedlm",
        run_id=run_id,
        computed_at=dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC),
        n_input=n_input,
        tables=[fixed.model_copy(update={"group_size_column": None})],
    )


def test_a_held_result_shows_its_published_figures_to_the_public_and_exact_ones_to_analysts(
    fast: FastApp,
) -> None:
    published = suppress(_model(50.87, n_input=100, run_id="process-earlier"), 5)
    held = HeldDocument(public=published, published_at=dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC))
    now = _model(51.23, n_input=101, run_id="process-now")
    _put(fast, now.model_copy(update={"protection": DocumentProtection(k=5, held=held)}))
    fast.app.dependency_overrides[page_user] = lambda: TokenClaims("rita", frozenset({"results:read"}))
    page = fast.http.get("/results").text
    assert "Not updated: fewer than 5 students changed since 2026-11-29 06:00 UTC" in page
    assert "50.87" in page and "process-earlier" in page
    assert "51.23" not in page
    fast.app.dependency_overrides[page_user] = lambda: TokenClaims(
        "anna", frozenset({"results:read", "analyst"})
    )
    exact = fast.http.get("/results").text
    assert "51.23" in exact and "50.87" not in exact
    assert "Public views show this result as published 2026-11-29 06:00 UTC" in exact
