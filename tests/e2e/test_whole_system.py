"""The whole system, end to end: `workbench up` on free ports, 5,000 demo students submitted through
the API and some through the HTML form in Chromium, the schedule's jobs run, then the results page
and every dashboard checked in the browser against a direct computation from what was submitted.

The direct computation is the pandas engine (one process, no Spark) on the submissions as stored;
the pipeline's figures come from Spark, statsmodels and the dashboards' own reading of `processed`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from pipeline_lib.clean import pandas_engine
from pipeline_lib.dashboards.catalog import live_path
from pipeline_lib.runs.schedule import load
from pipeline_lib.settings import PROJECT_DIR
from tests.e2e.conftest import Screenshot
from tests.e2e.running_system import System, quiet_system_env, workbench_up

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.spark]

PASSWORD = "reader-password-1"
FORM_STUDENTS = 12
TIMEOUT_MS = 60_000


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    # The system's own scheduler gets the shipped jobs at a time that never comes during the test;
    # the test runs the shipped schedule's jobs itself, in order, so it need not wait for cron.
    env, web = quiet_system_env(
        tmp_path,
        spark_master="local[2]",
        # Spark for every run, as a data set too large for pandas gets: the README's quick-start
        # test runs the same notebooks on the default engine choice (pandas, for its few records).
        pandas_max_records="0",
        form_rate_limit="10000/minute",
    )
    log = tmp_path / "up.log"
    with workbench_up(env, log):
        yield System(env, web, tmp_path / "var", log)


def _form_students(schools: list[str]) -> list[dict[str, str]]:
    """What a dozen students type, some of it dirty in ways the form accepts and the cleaner fixes."""
    sexes = ["female", "male", "other"]
    return [
        {
            "school": f" 0{schools[i % len(schools)]} " if i % 4 == 0 else schools[i % len(schools)],
            "sex": sexes[i % 3],
            "minority": "Yes" if i % 2 else "No",
            "ses": f"{(i - 6) / 4:.2f}".replace(".", ",") if i % 3 == 0 else f"{(i - 6) / 4:.2f}",
            "math": f"{40 + 3 * i}",
        }
        for i in range(FORM_STUDENTS)
    ]


def _submit_form(page: Page, student: dict[str, str]) -> None:
    page.goto("/")
    page.get_by_label("School code").fill(student["school"])
    page.get_by_label("Sex").select_option(student["sex"])
    page.locator("#minority").get_by_label(student["minority"]).check()
    page.get_by_label("Socio-economic status index").fill(student["ses"])
    page.get_by_label("Mathematics score").fill(student["math"])
    page.locator("#consent").check()
    page.get_by_role("button", name="Send my answers").click()
    expect(page.locator(".receipt-id")).to_be_visible()


def _sign_in(page: Page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _cell(page: Page, row: str, column: int) -> str:
    """A cell of the first row with this label on the result page showing."""
    return (
        page.locator("article.result tbody tr", has=page.locator("td", has_text=re.compile(f"^{row}$")))
        .first.locator("td")
        .nth(column)
        .inner_text()
    )


def _card(page: Page, label: str) -> Locator:
    """The value of the dashboard's headline card with this label."""
    card = page.locator(
        ".wb-card", has=page.locator(".wb-label", has_text=re.compile(f"^{re.escape(label)}"))
    )
    return card.locator(".wb-value")


def _dashboard(page: Page, name: str) -> Page:
    """A live dashboard, through the web app's proxy (its kernel's socket too)."""
    page.goto(live_path(name), wait_until="domcontentloaded")
    expect(page.locator("img").first).to_be_visible(timeout=120_000)
    return page


def _caterpillar(page: Page) -> str:
    image = page.locator(".widget-output figure.wb-plot img").first
    expect(image).to_be_visible(timeout=120_000)
    return image.get_attribute("src") or ""


def test_submissions_flow_to_the_results_page_and_every_dashboard(
    system: System, browser: Browser, screenshot: Screenshot
) -> None:
    for user, scopes in (("reader", ["results:read"]), ("analyst", ["results:read", "analyst"])):
        options = [part for scope in scopes for part in ("--scope", scope)]
        added = system.workbench("users", "add", user, *options, "--password-stdin", stdin=PASSWORD)
        assert added.returncode == 0, added.stderr
    demo = system.workbench(
        "demo", "--students", "5000", "--schools", "40", "--dirty", "0.1", "--seed", "5", "--url", system.web
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr

    with system.client() as db:
        schools = sorted(db.scan_pandas("schools", arrow_strings=False)["school_id"])
    context = browser.new_context(base_url=system.web)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    for student in _form_students(schools):
        _submit_form(page, student)
    screenshot(page, "form-receipt")

    # What was submitted, as stored, and the direct computation of what cleaning must make of it.
    with system.client() as db:
        submitted = db.scan_pandas("raw", arrow_strings=False)
        assert len(submitted) >= 5000 + FORM_STUDENTS
        assert (submitted["source"] == "form").sum() == FORM_STUDENTS
        expected = pandas_engine.clean(submitted, set(schools))
    cleaned, quarantined = expected.cleaned, expected.quarantine
    assert len(quarantined) > 0 and len(cleaned) > 4000

    for job in load(PROJECT_DIR / "schedules" / "crontab"):
        done = system.workbench("run", *job.args, timeout=1200)
        assert done.returncode == 0, f"workbench run {job.command}:\n{done.stdout}\n{done.stderr}"

    with system.client() as db:
        assert db.count("raw") == 0
        assert db.count("cleaned") == len(cleaned)
        assert db.count("quarantine") == len(quarantined)
        runs = db.list_documents("runs", limit=100)
    assert sorted((r["notebook"], r["status"]) for r in runs) == [
        ("clean", "succeeded"),
        ("process", "succeeded"),
    ]

    # The analyses count a student once: an identified student's latest record (as inputs.mark).
    identified = cleaned["student_ref"].notna()
    latest = (
        cleaned[identified]
        .sort_values(["received_at", "submission_id"], ascending=False)
        .drop_duplicates(["school_id", "student_ref"])
    )
    students = pd.concat([cleaned[~identified], latest])
    n, mean_math, mean_ses = len(students), students["math_score"].mean(), students["ses"].mean()
    n_schools = students["school_id"].nunique()

    page.goto("/results")
    _sign_in(page, "reader")
    expect(page.get_by_role("heading", name="Results", exact=True)).to_be_visible()
    overall = "Descriptive statistics of all students"
    screenshot(page, "results")
    page.get_by_role("link", name=overall, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(overall)
    assert _cell(page, "math_score", 1) == f"{n:,.4g}"
    assert _cell(page, "math_score", 2) == f"{mean_math:,.4g}"
    assert _cell(page, "ses", 2) == f"{mean_ses:,.4g}"
    screenshot(page, "result")

    # The snapshots every reader gets, on the web app's origin and sign-in, rendered after the
    # process run: the same figures as the live dashboards below.
    page.goto("/dashboards")
    screenshot(page, "dashboards")
    for name in ("overview", "schools", "models", "data_quality", "all_results"):
        page.goto(f"/dashboards/{name}")
        expect(page.locator("article.dashboard-snapshot img").first).to_be_visible()
        expect(page.locator(".snapshot-meta")).to_contain_text("Snapshot of run process-")
        screenshot(page, f"snapshot-{name}")
        if name == "overview":
            expect(_card(page, "students in the cleaned data")).to_have_text(f"{n:,}")
            expect(_card(page, "schools")).to_have_text(f"{n_schools:,}")
            expect(_card(page, "mean math score")).to_have_text(f"{mean_math:.1f}")
        elif name == "data_quality":
            expect(_card(page, "records cleaned")).to_have_text(f"{len(cleaned):,}")
        elif name == "schools":
            expect(page.locator("body")).to_contain_text(f"{n_schools:,} schools")
    # Live dashboards are for analysts.
    refused = page.goto(live_path("overview"))
    assert refused is not None and refused.status == 403
    context.close()

    # An analyst opens the live dashboards through the web app (Voilà on loopback behind it), and
    # they show the same figures; the schools filter redraws the plot over the proxied socket.
    analyst = browser.new_context(base_url=system.web)
    analyst.set_default_timeout(TIMEOUT_MS)
    page = analyst.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/dashboards/overview")
    _sign_in(page, "analyst")
    page.get_by_role("link", name="Open the live dashboard").click()
    expect(page).to_have_url(re.compile(re.escape(live_path("overview")) + "$"))
    expect(page.locator("img").first).to_be_visible(timeout=120_000)
    overview = page
    expect(_card(overview, "students in the cleaned data")).to_have_text(f"{n:,}")
    expect(_card(overview, "schools")).to_have_text(f"{n_schools:,}")
    expect(_card(overview, "mean math score")).to_have_text(f"{mean_math:.1f}")
    expect(_card(overview, "mean SES index")).to_have_text(f"{mean_ses:+.2f}")
    screenshot(overview, "overview")

    quality = _dashboard(page, "data_quality")
    expect(_card(quality, "records cleaned")).to_have_text(f"{len(cleaned):,}")
    expect(_card(quality, "records in quarantine")).to_have_text(f"{len(quarantined):,}")
    expect(quality.locator("body")).to_contain_text(
        f"{len(quarantined) / (len(cleaned) + len(quarantined)):.1%}"
    )
    screenshot(quality, "data_quality")

    models = _dashboard(page, "models")
    expect(_card(models, "students in the model").first).to_have_text(f"{n:,}")
    screenshot(models, "models")

    schools_page = _dashboard(page, "schools")
    expect(schools_page.locator("body")).to_contain_text(f"{n_schools:,} schools")
    screenshot(schools_page, "schools")

    first = _caterpillar(schools_page)
    schools_page.locator(".widget-dropdown select").select_option("private")
    expect(schools_page.locator(".widget-output figcaption")).to_contain_text("private schools;")
    assert _caterpillar(schools_page) != first
    screenshot(schools_page, "schools-live-private")
    assert not errors, f"script errors: {errors}"
    analyst.close()

    anonymous = browser.new_context(base_url=system.web)
    visit = anonymous.new_page()
    visit.goto("/dashboards/overview")
    expect(visit).to_have_url(re.compile(r"/login\?next=/dashboards/overview$"))
    anonymous.close()
