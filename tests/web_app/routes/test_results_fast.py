"""The results routes' logic, in process (see conftest): the read scope, suppression of groups
under k, analyst-only tables, freshness, the page and its warnings."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import struct
import xml.etree.ElementTree as ET
from urllib.parse import quote

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
from web_app.routes.result_views import chart_png, chart_svg
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


READER = TokenClaims("rita", frozenset({"results:read"}))
ANALYST = TokenClaims("anna", frozenset({"results:read", "analyst"}))
PAGE = f"/results/{KEY}"
CSV = f"/results/{KEY}/tables/by_sector.csv"
SVG = f"/results/{KEY}/chart.svg"


def _as(fast: FastApp, user: TokenClaims) -> None:
    """The pages' reader (downloads read the session itself: see `_signed_in`)."""
    fast.app.dependency_overrides[page_user] = lambda: user


def _signed_in(fast: FastApp, user: TokenClaims) -> None:
    """A browser session for the user: pages and downloads alike."""
    fast.sign_in(user.username, sorted(user.scopes))


def _failed_clean(fast: FastApp) -> None:
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


def _long(rows: int) -> ResultDocument:
    table = ResultTable(
        name="statistics",
        title="Per school",
        columns=["school_id", "n", "mean"],
        rows=[[f"S{i:04d}", 3 if i == 61 else 20, 50.0 + i / 100] for i in range(rows)],
        label_columns=["school_id"],
    )
    return ResultDocument(
        key="descriptives:by_school",
        title="By school",
        analysis="descriptives",
        run_id="p-1",
        computed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        n_input=6000,
        summary="Mean math score by school ranges from 50.0 to 51.2.",
        tables=[table],
    )


@pytest.mark.parametrize("path", ["/results", PAGE, CSV, SVG])
def test_a_signed_out_browser_is_sent_to_sign_in_from_every_results_page_and_download(
    fast: FastApp, path: str
) -> None:
    _put(fast, _result([40]))
    response = fast.http.get(path)
    assert response.status_code == 303 and response.headers["location"] == f"/login?next={quote(path)}"


@pytest.mark.parametrize("path", ["/results", PAGE, CSV, SVG])
def test_results_pages_and_downloads_need_the_read_scope(fast: FastApp, path: str) -> None:
    _put(fast, _result([40]))
    _signed_in(fast, TokenClaims("sam", frozenset({"submit"})))
    assert fast.http.get(path).status_code == 403


def test_a_script_downloads_with_its_bearer_token_and_the_api_s_answers(fast: FastApp) -> None:
    _put(fast, _result([40]))
    assert fast.http.get(CSV, headers=fast.bearer("rita", ["results:read"])).status_code == 200
    assert is_problem(fast.http.get(SVG, headers=fast.bearer("sam", ["submit"])), 403)
    assert is_problem(fast.http.get(CSV, headers={"Authorization": "Bearer forged"}), 401)


def test_the_index_has_a_card_per_result_linking_to_its_page_and_no_tables(fast: FastApp) -> None:
    _as(fast, READER)
    _put(fast, _result([40, 3], run_id="process-20261129T101500Z-3fa9c1"))
    _put(fast, _long(120))
    _failed_clean(fast)
    page = fast.http.get("/results")
    assert page.status_code == 200
    assert page.text.count('<li class="card"') == 2
    assert f'<a href="{PAGE}">Math by sector</a>' in page.text
    assert '<a href="/results/descriptives:by_school">By school</a>' in page.text
    # School S0061 (3 students) is hidden, so the summary written from every school is left out.
    assert "Mean math score by school ranges from 50.0 to 51.2." not in page.text
    assert "summary is left out" in page.text
    assert "Computed 2026-01-01 00:00 UTC by run <code>p-1</code>\n    from 6,000 records." in page.text
    assert "The latest clean run (clean-20261129T111500Z-aaaaaa) failed" in page.text
    assert "<table" not in page.text and "<svg" not in page.text and "S0000" not in page.text


def test_the_index_says_when_a_result_failed_or_is_withheld(fast: FastApp) -> None:
    _as(fast, READER)
    failed = _long(3).model_copy(update={"status": "failed", "error": "no optimizer gave a usable REML fit"})
    _put(fast, failed)
    _put(fast, _protected(["s(mean) of sector1 can be narrowed to [9.9, 10.1]"]))
    page = fast.http.get("/results").text
    assert "did not give a result in this run: no optimizer gave a usable REML fit" in page
    assert "Withheld: a hidden figure could be worked out" in page and "9.9" not in page


def test_the_index_with_no_results_says_so(fast: FastApp) -> None:
    _as(fast, READER)
    assert "No results yet." in fast.http.get("/results").text


def test_a_result_page_shows_its_chart_then_its_tables_with_small_groups_hidden(fast: FastApp) -> None:
    _as(fast, READER)
    _put(fast, _result([40, 3], run_id="process-20261129T101500Z-3fa9c1"))
    _failed_clean(fast)
    page = fast.http.get(PAGE)
    assert page.status_code == 200
    text = page.text
    assert '<h1 id="result-title">Math by sector</h1>' in text and '<a href="/results">' in text
    assert "<rect" in text and text.index("<svg") < text.index("<table")
    assert '<tr class="suppressed">' in text and "<em>suppressed</em>" in text
    assert "For analysts" not in text and "exact figures" not in text
    assert "The latest clean run (clean-20261129T111500Z-aaaaaa) failed" in text
    assert f'href="{CSV}"' in text and f'href="{SVG}"' in text
    assert "Rows 1" not in text  # one page: no pager


def test_an_analyst_s_result_page_has_the_analyst_tables_marked_exact(fast: FastApp) -> None:
    _as(fast, ANALYST)
    _put(fast, _result([40, 3]))
    text = fast.http.get(PAGE).text
    assert "For analysts" in text and "analyst view" in text
    assert "Mean math score by sector (exact figures, analyst view)" in text  # the chart's title


@pytest.mark.parametrize(
    ("query", "first", "last", "previous", "following"),
    [
        ("", 0, 49, None, 2),
        ("?page=2", 50, 99, 1, 3),
        ("?table=statistics&page=3", 100, 119, 2, None),
        ("?page=99", 100, 119, 2, None),  # past the end: the last page
        ("?table=other&page=2", 0, 49, None, 2),  # turns another table's pages
    ],
)
def test_a_long_table_is_paged_by_links_that_need_no_javascript(
    fast: FastApp, query: str, first: int, last: int, previous: int | None, following: int | None
) -> None:
    _as(fast, READER)
    _put(fast, _long(120))
    text = fast.http.get(f"/results/descriptives:by_school{query}").text
    shown = re.findall(r"<td>S(\d{4})</td>", text)
    assert shown == [f"{i:04d}" for i in range(first, last + 1)]
    assert f"Rows {first + 1} to {last + 1} of 120" in text
    link = 'href="?table=statistics&amp;page={}#t-statistics"'
    assert (link.format(previous) in text) is ('rel="prev"' in text) is (previous is not None)
    assert (link.format(following) in text) is ('rel="next"' in text) is (following is not None)
    assert "<svg" not in text  # 120 bars would not be a chart anyone can read
    assert "Download the table (CSV, all 120 rows)" in text


def test_a_page_number_that_is_not_one_is_refused(fast: FastApp) -> None:
    _as(fast, READER)
    _put(fast, _long(120))
    assert is_problem(fast.http.get("/results/descriptives:by_school?page=0"), 422)


@pytest.mark.parametrize("key", ["nope:none", "broken:doc", "bad key!", "x" * 201])
def test_an_unknown_unreadable_or_malformed_key_is_a_404_page(fast: FastApp, key: str) -> None:
    _as(fast, READER)
    _put(fast, {"key": "broken:doc", "title": "no run id"})
    response = fast.http.get(f"/results/{quote(key)}")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "No such result" in response.text and 'href="/results"' in response.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/results/nope:none/chart.svg", 404),
        ("/results/nope:none/tables/by_sector.csv", 404),
        (f"/results/{KEY}/tables/nope.csv", 404),
        (f"/results/{KEY}/tables/detail.csv", 404),  # the analysts' table
        ("/results/bad%20key!/chart.svg", 422),
        (f"/results/{KEY}/tables/bad%20name!.csv", 422),
    ],
)
def test_a_download_of_something_not_shown_is_a_problem(fast: FastApp, path: str, status: int) -> None:
    _signed_in(fast, READER)
    _put(fast, _result([40, 3]))
    assert is_problem(fast.http.get(path), status)


def test_a_table_downloads_as_csv_as_the_page_shows_it_with_why_and_hidden_cells_empty(fast: FastApp) -> None:
    _signed_in(fast, READER)
    _put(fast, _protected())
    response = fast.http.get(CSV)
    assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = 'attachment; filename="descriptives_sector-by_sector.csv"'
    assert response.headers["content-disposition"] == disposition
    assert list(csv.reader(io.StringIO(response.text))) == [
        ["sector", "n", "mean", "why"],
        ["sector0", "40", "10.0", ""],
        ["sector1", "", "", "fewer than 5 students"],
        ["sector2", "", "", "hidden so others cannot be derived"],
        ["sector3", "44", "12.5", "not updated: fewer than 5 students changed since 2026-11-29 06:00 UTC"],
    ]


def test_an_analyst_s_csv_has_the_exact_figures_and_says_so_in_its_name(fast: FastApp) -> None:
    _signed_in(fast, ANALYST)
    _put(fast, _protected())
    response = fast.http.get(CSV)
    assert 'filename="descriptives_sector-by_sector-exact.csv"' in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    # Exact: the complementary row shows; a group under k stays hidden for analysts too.
    assert rows[2:4] == [["sector1", "", "", "fewer than 5 students"], ["sector2", "30", "12.0", ""]]
    assert fast.http.get(f"/results/{KEY}/tables/detail.csv").status_code == 200


def test_a_text_cell_a_spreadsheet_would_run_is_quoted_in_the_csv(fast: FastApp) -> None:
    _signed_in(fast, READER)
    doc = _result([40, 30])
    table = doc.tables[0].model_copy(update={"rows": [["=HYPERLINK(1)", 40, -1.5], ["-x", 30, 2.0]]})
    _put(fast, doc.model_copy(update={"tables": [table]}))
    rows = list(csv.reader(io.StringIO(fast.http.get(CSV).text)))
    assert rows[1] == ["'=HYPERLINK(1)", "40", "-1.5", ""] and rows[2][0] == "'-x"


def test_the_chart_downloads_as_an_svg_file_with_hidden_bars_left_out(fast: FastApp) -> None:
    _signed_in(fast, READER)
    _put(fast, _result([40, 3]))
    response = fast.http.get(SVG)
    assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
    assert 'filename="descriptives_sector-chart.svg"' in response.headers["content-disposition"]
    svg = ET.fromstring(response.content)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    width, height = float(svg.attrib["width"]), float(svg.attrib["height"])
    assert svg.attrib["viewBox"] == f"0 0 {svg.attrib['width']} {svg.attrib['height']}" and width > height > 0
    assert len(svg.findall("{http://www.w3.org/2000/svg}rect")) == 1 and "suppressed" in response.text
    assert "11" not in "".join(svg.itertext()).replace("2026-11", "")  # sector1's 11.0 is not drawn


def test_the_chart_downloads_as_a_png_of_the_same_chart_as_the_page(fast: FastApp) -> None:
    _signed_in(fast, READER)
    doc = _result([40, 3])
    _put(fast, doc)
    response = fast.http.get(f"/results/{KEY}/chart.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert 'filename="descriptives_sector-chart.png"' in response.headers["content-disposition"]
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", response.content[16:24])
    assert width == 2 * 640 and 0 < height < width
    # Drawn from the chart the page shows this reader: the hidden bar is left out of it too.
    public = suppress(doc, fast.settings.k_min_group, analyst=False)
    assert response.content == chart_png(chart_svg(public))
    exact = suppress(doc, fast.settings.k_min_group, analyst=True)
    assert response.content != chart_png(chart_svg(exact))
    assert fast.http.get("/results/nope:none/chart.png").status_code == 404


def test_a_result_with_no_chart_or_withheld_has_no_svg(fast: FastApp) -> None:
    _signed_in(fast, READER)
    _put(fast, _long(120))
    assert is_problem(fast.http.get("/results/descriptives:by_school/chart.svg"), 404)
    _put(fast, _protected(["s(mean) of sector1 can be narrowed to [9.9, 10.1]"]))
    assert is_problem(fast.http.get(SVG), 404) and is_problem(fast.http.get(CSV), 404)


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
    _as(fast, READER)
    page = fast.http.get(PAGE).text
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
    held_page, held_csv = "/results/mixedlm:null_model", "/results/mixedlm:null_model/tables/fixed.csv"
    _signed_in(fast, READER)
    index, page, table = (fast.http.get(path).text for path in ("/results", held_page, held_csv))
    for shown in (index, page):
        assert "Not updated: fewer than 5 students changed since 2026-11-29 06:00 UTC" in shown
        assert "process-earlier" in shown and "51.23" not in shown
    assert "50.87" in page and "51.23" not in page
    assert list(csv.reader(io.StringIO(table))) == [["term", "estimate", "why"], ["Intercept", "50.87", ""]]
    _signed_in(fast, ANALYST)
    exact, exact_csv = fast.http.get(held_page).text, fast.http.get(held_csv).text
    assert "51.23" in exact and "50.87" not in exact
    assert "Public views show this result as published 2026-11-29 06:00 UTC" in exact
    assert "51.23" in exact_csv and "50.87" not in exact_csv


def test_a_withheld_result_page_says_why_and_shows_no_table_or_chart(fast: FastApp) -> None:
    _put(fast, _protected(["s(mean) of sector1 can be narrowed to [9.9, 10.1]"]))
    _as(fast, READER)
    page = fast.http.get(PAGE).text
    assert "Withheld: a hidden figure could be worked out" in page and "9.9" not in page
    assert "<table" not in page and "<svg" not in page
