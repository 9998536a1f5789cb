"""The web app in a real browser: headless Chromium against a real db-api and uvicorn per test.

Each test drives the pages as a person would (labels, buttons, links) and checks what they see,
then checks what the db-api holds. Screenshots: tests/artifacts/screenshots/<test>-<step>.png.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from pipeline_lib.process.results import SUMMARY_LEFT_OUT, ChartSpec, ResultDocument, ResultTable
from tests.e2e.conftest import SCREENSHOTS
from tests.web_app.conftest import PASSWORD, WebStack

pytestmark = [pytest.mark.slow, pytest.mark.browser]

NewPage = Callable[..., Page]  # the `new_page` fixture
Screenshot = Callable[[Page, str], Path]  # the `screenshot` fixture

# The plain-words messages the form shows (pipeline_lib.contract.fields.check_value and the consent rule).
NOT_A_NUMBER = "Enter a number, like 12 or 3,5."
OUT_OF_RANGE = "Enter a number from -10 to 100."
REQUIRED = "This is required."
NO_CONSENT = "Please tick this box: without your consent nothing can be stored."


# -- helpers -----------------------------------------------------------------------------------


def field_of(page: Page, control_id: str) -> Locator:
    """The form's `.field` block holding the control with this id (its label, hint and error)."""
    return page.locator("form .field", has=page.locator(f"#{control_id}"))


def send_form(page: Page) -> None:
    page.get_by_role("button", name="Send my answers").click()


def fill_bad_answers(page: Page) -> None:
    """School and minority right; ses not a number, math out of range, sex empty, no consent."""
    page.get_by_label("School code").fill("1224")
    page.locator("#minority").get_by_label("Yes").check()
    page.get_by_label("Socio-economic status index").fill("abc")
    page.get_by_label("Mathematics score").fill("500")


def fill_good_answers(page: Page) -> None:
    page.get_by_label("School code").fill("1224")
    page.get_by_label("Sex").select_option("female")
    page.locator("#minority").get_by_label("No").check()
    page.get_by_label("Socio-economic status index").fill("1,5")
    page.get_by_label("Mathematics score").fill("72,5")
    page.get_by_label("Age (optional)").fill("15")
    page.locator("#consent").check()


def receipt_number(page: Page) -> str:
    """Wait for the receipt page and read its number."""
    expect(page).to_have_url(re.compile(r"/thanks/[^/]+$"))
    expect(page.get_by_role("heading", name="Thank you: your answers are stored")).to_be_visible()
    number = page.locator("#receipt").inner_text().strip()
    assert number and page.url.endswith(f"/thanks/{number}")
    return number


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fill and send the login form the page is showing."""
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def no_horizontal_scroll(page: Page) -> None:
    widths = page.evaluate(
        "() => ({scroll: document.scrollingElement.scrollWidth, inner: window.innerWidth})"
    )
    assert widths["scroll"] <= widths["inner"], f"the page scrolls sideways: {widths}"


def inside_viewport(page: Page, locator: Locator) -> None:
    """Visible and not cut off at either side of the viewport."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    width = page.evaluate("() => window.innerWidth")
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (box, width)


# -- the student form --------------------------------------------------------------------------


def test_form_bad_values_are_explained_next_to_their_fields(
    page: Page, stack: WebStack, screenshot: Screenshot
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Your answers")).to_be_visible()
    screenshot(page, "empty")
    fill_bad_answers(page)
    send_form(page)

    summary = page.locator(".error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_have_attribute("role", "alert")
    expect(summary.get_by_role("heading")).to_have_text("Please check 4 answers")
    # One link per problem, in the order of the form, each leading to its field.
    links = summary.get_by_role("link")
    expect(links).to_have_text([REQUIRED, NOT_A_NUMBER, OUT_OF_RANGE, NO_CONSENT])
    assert [links.nth(i).get_attribute("href") for i in range(4)] == [
        "#sex",
        "#ses",
        "#math_score",
        "#consent",
    ]
    screenshot(page, "errors")

    # Each message sits in its own field's block, right above the control it is about.
    expected = {"sex": REQUIRED, "ses": NOT_A_NUMBER, "math_score": OUT_OF_RANGE, "consent": NO_CONSENT}
    expect(page.locator("form .field.has-error")).to_have_count(len(expected))
    for control_id, message in expected.items():
        block = field_of(page, control_id)
        expect(block).to_have_class(re.compile(r"\bhas-error\b"))
        error = block.locator(".error")
        expect(error).to_have_text(message)
        expect(error).to_be_visible()
        error_box, control_box = error.bounding_box(), page.locator(f"#{control_id}").bounding_box()
        assert error_box is not None and control_box is not None
        gap = control_box["y"] - (error_box["y"] + error_box["height"])
        assert 0 <= gap < 40, f"{control_id}: the error is not right above its control ({gap:.0f}px)"
    for control_id in ("sex", "ses", "math_score"):
        control = page.locator(f"#{control_id}")
        expect(control).to_have_attribute("aria-invalid", "true")
        expect(control).to_have_attribute("aria-describedby", re.compile(rf"\b{control_id}-error\b"))
    # The fields that were fine show no error.
    for control_id in ("school_id", "minority", "age"):
        expect(field_of(page, control_id).locator(".error")).to_have_count(0)

    # What was typed is kept, so only the mistakes need retyping.
    expect(page.get_by_label("School code")).to_have_value("1224")
    expect(page.get_by_label("Socio-economic status index")).to_have_value("abc")
    expect(page.get_by_label("Mathematics score")).to_have_value("500")
    expect(page.get_by_label("Sex")).to_have_value("")
    expect(page.locator("#minority").get_by_label("Yes")).to_be_checked()
    expect(page.locator("#consent")).not_to_be_checked()

    # Clicking a summary link takes the reader to that field.
    links.nth(1).click()
    expect(page).to_have_url(re.compile(r"#ses$"))

    assert stack.db.count("raw") == 0


def test_form_corrected_values_give_a_receipt_for_the_stored_record(
    page: Page, stack: WebStack, screenshot: Screenshot
) -> None:
    page.goto("/")
    fill_bad_answers(page)
    send_form(page)
    expect(page.locator(".error-summary")).to_be_visible()
    assert stack.db.count("raw") == 0

    # Correct the mistakes on the page that explained them; a decimal comma is fine.
    page.get_by_label("Socio-economic status index").fill("1,5")
    page.get_by_label("Mathematics score").fill("72,5")
    page.get_by_label("Sex").select_option("female")
    page.locator("#consent").check()
    screenshot(page, "corrected")
    send_form(page)

    number = receipt_number(page)
    screenshot(page, "receipt")
    # The receipt number is the id of the one record now in raw.
    assert [r["_id"] for r in stack.db.scan("raw", columns=["_id"]).to_pylist()] == [number]
    stored = stack.db.get("raw", number)
    assert stored is not None
    # Stored as typed: cleaning interprets the values later.
    assert {k: stored.get(k) for k in ("school_id", "sex", "minority", "ses", "math_score", "consent")} == {
        "school_id": "1224",
        "sex": "female",
        "minority": "yes",
        "ses": "1,5",
        "math_score": "72,5",
        "consent": "yes",
    }
    assert stored["source"] == "form"


def test_form_on_a_phone_has_no_sideways_scroll(
    new_page: NewPage, stack: WebStack, screenshot: Screenshot
) -> None:
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto("/")
    expect(page.get_by_role("heading", name="Your answers")).to_be_visible()
    no_horizontal_scroll(page)
    labels = page.locator("form label, form legend")
    assert labels.count() >= 10
    for i in range(labels.count()):
        inside_viewport(page, labels.nth(i))
    for control_id in ("school_id", "sex", "ses", "math_score", "absences"):
        inside_viewport(page, page.locator(f"#{control_id}"))
    inside_viewport(page, page.get_by_role("button", name="Send my answers"))
    screenshot(page, "form")

    # The page with error messages fits too.
    send_form(page)
    expect(page.locator(".error-summary")).to_be_visible()
    no_horizontal_scroll(page)
    screenshot(page, "errors")

    # And the receipt, whose long number must wrap.
    fill_good_answers(page)
    send_form(page)
    receipt_number(page)
    no_horizontal_scroll(page)
    inside_viewport(page, page.locator("#receipt"))
    screenshot(page, "receipt")
    assert stack.db.count("raw") == 1


def test_form_works_without_javascript(new_page: NewPage, stack: WebStack, screenshot: Screenshot) -> None:
    page = new_page(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page.goto("/")
    fill_good_answers(page)
    send_form(page)
    number = receipt_number(page)
    screenshot(page, "receipt")
    stored = stack.db.get("raw", number)
    assert stored is not None and stored["ses"] == "1,5" and stored["consent"] == "yes"
    assert stack.db.count("raw") == 1


# -- results -----------------------------------------------------------------------------------

COMPUTED_AT = dt.datetime(2024, 5, 6, 7, 8, tzinfo=dt.UTC)
RUN_ID = "run-20240506-a1b2c3"


def _result_documents() -> dict[str, dict]:
    by_sex = ResultDocument(
        key="math_by_sex",
        title="Mathematics score by sex",
        analysis="group_means",
        run_id=RUN_ID,
        computed_at=COMPUTED_AT,
        n_input=81,
        summary="Mean mathematics score of each group.",
        tables=[
            ResultTable(
                name="by_sex",
                title="Mean mathematics score by sex",
                columns=["sex", "n", "mean_math"],
                rows=[["female", 40, 61.25], ["male", 38, 58.5], ["other", 3, 70.125]],
                label_columns=["sex"],
            )
        ],
        chart=ChartSpec(table="by_sex", x="sex", y="mean_math", title="Mean mathematics score"),
    )
    by_minority = ResultDocument(
        key="ses_by_minority",
        title="Socio-economic status by minority",
        analysis="group_means",
        run_id=RUN_ID,
        computed_at=COMPUTED_AT,
        n_input=81,
        tables=[
            ResultTable(
                name="by_minority",
                title="Mean SES index by minority",
                columns=["minority", "n", "mean_ses"],
                rows=[["yes", 20, -0.4], ["no", 61, 0.35]],
                label_columns=["minority"],
            )
        ],
    )
    return {doc.key: doc.model_dump(mode="json") for doc in (by_sex, by_minority)}


def test_results_need_a_login_and_hide_small_groups(
    page: Page, stack: WebStack, screenshot: Screenshot
) -> None:
    for key, document in _result_documents().items():
        stack.db.put_document("processed", key, document)

    page.goto("/results")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)results$"))
    screenshot(page, "login")
    sign_in(page, "reader")
    expect(page).to_have_url(f"{stack.url}/results")
    expect(page.get_by_role("heading", name="Results", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Sign out reader")).to_be_visible()
    expect(page.locator(".lead")).to_contain_text("fewer than 5 students")

    # The index: a card per result, with its summary and when it was computed, and no tables.
    cards = page.locator("li.card")
    expect(cards).to_have_count(2)
    by_sex = cards.nth(0)
    expect(by_sex.get_by_role("heading", level=2)).to_have_text("Mathematics score by sex")
    # A group of 3 is hidden, so the summary (written from every group's figures) is left out.
    expect(by_sex.locator(".summary")).to_have_text(SUMMARY_LEFT_OUT)
    expect(by_sex.locator(".meta")).to_have_text(
        f"Computed 2024-05-06 07:08 UTC by run {RUN_ID} from 81 records."
    )
    expect(by_sex.locator(".meta code")).to_have_text(RUN_ID)
    expect(page.get_by_role("table")).to_have_count(0)
    screenshot(page, "results")

    # A result's own page: its chart first, then its table.
    by_sex.get_by_role("link", name="Mathematics score by sex").click()
    expect(page).to_have_url(f"{stack.url}/results/math_by_sex")
    expect(page.get_by_role("heading", level=1)).to_have_text("Mathematics score by sex")
    result = page.locator("article.result")
    table = result.get_by_role("table", name="Mean mathematics score by sex")
    expect(result.get_by_role("heading", level=2)).to_have_text("Mean mathematics score by sex")
    # A table with a hidden row says why in a last column.
    expect(table.locator("thead th")).to_have_text(["sex", "n", "mean_math", "why"])
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("td")).to_have_text(["female", "40", "61.25", ""])
    expect(rows.nth(1).locator("td")).to_have_text(["male", "38", "58.5", ""])
    # The group of 3 keeps its label; its size and figure are not shown, and the row says why.
    small = rows.nth(2)
    expect(small).to_have_class(re.compile(r"\bsuppressed\b"))
    expect(small.locator("td")).to_have_text(["other", "suppressed", "suppressed", "fewer than 5 students"])

    chart = result.locator("figure svg")
    expect(chart).to_have_count(1)
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("aria-label", "Mean mathematics score")
    bars = chart.locator("rect")
    expect(bars).to_have_count(2)  # female and male; the small group draws no bar
    for i in range(2):
        box = bars.nth(i).bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
    expect(chart.locator("text", has_text="suppressed")).to_have_count(1)
    chart_box, table_box = chart.bounding_box(), table.bounding_box()
    assert chart_box is not None and table_box is not None and chart_box["y"] < table_box["y"]
    assert "70.1" not in result.inner_text()
    screenshot(page, "result")

    # The downloads hold what the page shows.
    with page.expect_download() as table_file:
        result.get_by_role("link", name="Download the table (CSV)").click()
    assert table_file.value.suggested_filename == "math_by_sex-by_sex.csv"
    assert Path(table_file.value.path()).read_text().splitlines() == [
        "sex,n,mean_math,why",
        "female,40,61.25,",
        "male,38,58.5,",
        "other,,,fewer than 5 students",
    ]
    with page.expect_download() as chart_file:
        result.get_by_role("link", name="Download the chart (SVG)").click()
    svg = Path(chart_file.value.path()).read_text()
    assert chart_file.value.suggested_filename == "math_by_sex-chart.svg"
    assert svg.count("<rect") == 2 and "70.1" not in svg
    with page.expect_download() as png_file:
        result.get_by_role("link", name="Download the chart (PNG)").click()
    assert png_file.value.suggested_filename == "math_by_sex-chart.png"
    assert Path(png_file.value.path()).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # Printed (print to PDF), it is the result alone: no site navigation, links to download or forms.
    page.emulate_media(media="print")
    expect(page.locator("header.site")).to_be_hidden()
    expect(result.locator(".downloads").first).to_be_hidden()
    expect(page.locator("p.back")).to_be_hidden()
    expect(table).to_be_visible()
    expect(chart).to_be_visible()
    screenshot(page, "print")
    pdf = page.pdf(path=str(SCREENSHOTS / "test_results_need_a_login_and_hide_small_groups-print.pdf"))
    assert pdf.startswith(b"%PDF")
    page.emulate_media(media="screen")

    # The second result has no chart spec: its first figure column is drawn.
    page.get_by_role("link", name="All results").click()
    page.get_by_role("link", name="Socio-economic status by minority").click()
    expect(page).to_have_url(f"{stack.url}/results/ses_by_minority")
    by_minority = page.locator("article.result")
    expect(by_minority.get_by_role("heading", level=1)).to_have_text("Socio-economic status by minority")
    expect(by_minority.locator(".meta code")).to_have_text(RUN_ID)
    expect(by_minority.locator("tbody tr")).to_have_count(2)
    expect(by_minority.locator("tr.suppressed")).to_have_count(0)
    expect(by_minority.locator("figure svg rect")).to_have_count(2)


def _long_result() -> ResultDocument:
    return ResultDocument(
        key="descriptives:by_school",
        title="Mathematics by school",
        analysis="descriptives",
        run_id=RUN_ID,
        computed_at=COMPUTED_AT,
        n_input=6000,
        summary="Mean mathematics score of each school.",
        tables=[
            ResultTable(
                name="statistics",
                title="Mean mathematics score by school, with a long name that has to wrap on a phone",
                columns=["school_id", "n", "mean_math", "sd_math", "median_math", "q1_math", "q3_math"],
                rows=[
                    [f"S{i:04d}", 3 if i == 2 else 20, 50 + i / 100, 9.5, 50.5, 40.25, 60.75]
                    for i in range(120)
                ],
                label_columns=["school_id"],
            )
        ],
    )


def test_a_long_table_is_paged_by_links_without_javascript(
    new_page: NewPage, stack: WebStack, screenshot: Screenshot
) -> None:
    document = _long_result()
    stack.db.put_document("processed", document.key, document.model_dump(mode="json"))
    page = new_page(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page.goto("/login?next=/results/descriptives:by_school")
    sign_in(page, "reader")
    rows = page.locator("article.result tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator(".meta", has_text="Rows 1 to 50 of 120")).to_be_visible()
    expect(page.get_by_role("link", name="← Previous rows")).to_have_count(0)
    page.get_by_role("link", name="Next rows →").click()
    expect(page).to_have_url(re.compile(r"\?table=statistics&page=2#t-statistics$"))
    expect(rows.first.locator("td").first).to_have_text("S0050")
    page.get_by_role("link", name="Next rows →").click()
    expect(rows).to_have_count(20)
    expect(rows.last.locator("td").first).to_have_text("S0119")
    expect(page.get_by_role("link", name="Next rows →")).to_have_count(0)
    page.get_by_role("link", name="← Previous rows").click()
    expect(rows.first.locator("td").first).to_have_text("S0050")
    screenshot(page, "page-2")


def test_results_on_a_phone_have_no_sideways_scroll(
    new_page: NewPage, stack: WebStack, screenshot: Screenshot
) -> None:
    for key, document in {**_result_documents(), "descriptives:by_school": None}.items():
        doc = document or _long_result().model_dump(mode="json")
        stack.db.put_document("processed", key, doc)
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto("/login?next=/results")
    sign_in(page, "reader")
    expect(page.locator("li.card")).to_have_count(3)
    no_horizontal_scroll(page)
    screenshot(page, "index")
    for key in ("math_by_sex", "descriptives:by_school"):
        page.goto(f"/results/{key}")
        expect(page.get_by_role("table")).to_be_visible()
        no_horizontal_scroll(page)
        inside_viewport(page, page.get_by_role("link", name=re.compile(r"^Download the table")).first)
        screenshot(page, key.replace(":", "_"))


# -- schools -----------------------------------------------------------------------------------


def test_admin_adds_a_school_and_the_form_offers_it(
    page: Page, stack: WebStack, screenshot: Screenshot
) -> None:
    page.goto("/schools")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)schools$"))
    sign_in(page, "admin")
    expect(page).to_have_url(f"{stack.url}/schools")
    expect(page.get_by_role("heading", name="Known schools (0)")).to_be_visible()

    page.get_by_label("School code").fill(" 04711 ")  # normalised to 4711
    page.get_by_label("Name", exact=True).fill("Hillside Secondary")
    page.get_by_label("Sector").select_option("catholic")
    page.get_by_label("Number of students").fill("420")
    page.get_by_role("button", name="Save school").click()

    expect(page.get_by_role("status")).to_have_text("Saved: 1 new, 0 replaced.")
    expect(page.get_by_role("heading", name="Known schools (1)")).to_be_visible()
    expect(page.locator("tbody tr").first.locator("td")).to_have_text(
        ["4711", "Hillside Secondary", "catholic", "420"]
    )
    screenshot(page, "schools")
    assert stack.db.count("schools") == 1

    page.goto("/")
    expect(page.get_by_label("School code")).to_have_attribute("list", "known-schools")
    option = page.locator('datalist#known-schools option[value="4711"]')
    expect(option).to_have_count(1)
    expect(option).to_have_text("Hillside Secondary")
    screenshot(page, "form")


# -- accessibility of errors and charts -----------------------------------------------------------


def test_form_errors_are_tied_to_their_controls_for_screen_readers(page: Page, stack: WebStack) -> None:
    page.goto("/")
    send_form(page)
    expect(page.locator(".error-summary")).to_be_visible()
    consent = page.locator("#consent")
    expect(consent).to_have_attribute("aria-invalid", "true")
    expect(consent).to_have_attribute("aria-describedby", re.compile(r"\bconsent-error\b"))
    dangling = page.evaluate(
        """() => [...document.querySelectorAll('[aria-describedby]')].flatMap(el =>
            el.getAttribute('aria-describedby').split(/\\s+/).filter(id => id && !document.getElementById(id))
              .map(id => `${el.id} -> #${id}`))"""
    )
    assert dangling == []


def test_chart_draws_negative_values_left_of_zero(page: Page, stack: WebStack) -> None:
    document = _result_documents()["ses_by_minority"]  # rows: yes -0.4, no 0.35
    stack.db.put_document("processed", "ses_by_minority", document)
    page.goto("/login?next=/results/ses_by_minority")
    sign_in(page, "reader")
    bars = page.locator("article.result figure svg rect")
    expect(bars).to_have_count(2)
    negative, positive = bars.nth(0).bounding_box(), bars.nth(1).bounding_box()
    assert negative is not None and positive is not None
    assert negative["x"] + negative["width"] <= positive["x"] + 0.5, (negative, positive)


# -- runs --------------------------------------------------------------------------------------


def test_an_analyst_sees_why_a_run_failed_in_its_rendered_notebook(
    page: Page, stack: WebStack, screenshot: Screenshot
) -> None:
    from tests.web_app.test_runs_pages import _seed

    _seed(stack)
    page.goto("/runs")
    sign_in(page, "analyst")
    expect(page).to_have_url(f"{stack.url}/runs")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(5)
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    screenshot(page, "runs")
    page.get_by_role("link", name="clean-2").click()
    expect(page.get_by_role("alert")).to_contain_text("ValueError in cell 2")
    notebook = page.frame_locator("iframe.notebook")
    expect(notebook.get_by_text("read 120 records").first).to_be_visible()
    expect(notebook.get_by_text("ses out of range").first).to_be_visible()
    # The output's script never ran: the frame is sandboxed and its policy forbids scripts.
    assert page.evaluate("() => window.stolen") is None
    # A sandboxed frame is painted only once it is on screen.
    page.locator("iframe.notebook").scroll_into_view_if_needed()
    notebook.get_by_text("read 120 records").first.scroll_into_view_if_needed()
    screenshot(page, "run")
