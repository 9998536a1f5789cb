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

from pipeline_lib.process.results import ChartSpec, ResultDocument, ResultTable
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

    sections = page.locator("section.result")
    expect(sections).to_have_count(2)
    by_sex = sections.nth(0)
    expect(by_sex.get_by_role("heading", level=2)).to_have_text("Mathematics score by sex")
    expect(by_sex.locator(".meta")).to_have_text(
        f"Computed 2024-05-06 07:08 UTC by run {RUN_ID} from 81 records."
    )
    expect(by_sex.locator(".meta code")).to_have_text(RUN_ID)

    table = by_sex.get_by_role("table")
    expect(table.locator("caption")).to_have_text("Mean mathematics score by sex")
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

    chart = by_sex.locator("figure svg")
    expect(chart).to_have_count(1)
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("aria-label", "Mean mathematics score")
    bars = chart.locator("rect")
    expect(bars).to_have_count(2)  # female and male; the small group draws no bar
    for i in range(2):
        box = bars.nth(i).bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
    expect(chart.locator("text", has_text="suppressed")).to_have_count(1)
    assert "70.1" not in by_sex.inner_text()

    # The second result has no chart spec: its first figure column is drawn.
    by_minority = sections.nth(1)
    expect(by_minority.get_by_role("heading", level=2)).to_have_text("Socio-economic status by minority")
    expect(by_minority.locator(".meta code")).to_have_text(RUN_ID)
    expect(by_minority.locator("tbody tr")).to_have_count(2)
    expect(by_minority.locator("tr.suppressed")).to_have_count(0)
    expect(by_minority.locator("figure svg rect")).to_have_count(2)
    screenshot(page, "results")


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
    page.goto("/login?next=/results")
    sign_in(page, "reader")
    bars = page.locator("section.result figure svg rect")
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
