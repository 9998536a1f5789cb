"""The README's user commands, typed as a user types them against one running system: `workbench demo`
with an account of one's own (its password on standard input), `workbench run clean -p batch_size
2000`, `workbench run process --timeout 600`, `workbench new analysis gender_gap` and `workbench run
gender_gap`, and the public form at its default rate limit (20 posts a minute per client address).

The system is `workbench up` on free ports with its data in a temporary folder, every other setting
its default but two: the notebooks folder is a copy (`workbench new analysis` writes into it, and
the checkout's must stay as it is) and the schedule is one that never fires while the module runs,
so every run here is the one its command started (the README's quick-start test runs the shipped
schedule). Each command runs once, in a module-scoped fixture that the next step builds on; the
tests look at what it printed and what it left in the database, the archive and the web app.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import PROJECT_DIR
from tests.e2e.running_system import quiet_system_env, workbench_up

pytestmark = pytest.mark.slow

# The console script of the venv running the tests: what `.venv/bin/workbench` is in the README.
WORKBENCH = Path(sys.executable).with_name("workbench")
DEMO_USER = "loader"
READER = "reader"
PASSWORD = "user-commands-password-1"
STUDENTS = 2000
ANALYSIS = "gender_gap"
FORM_LIMIT = 20  # the README's and pipeline_lib/settings.py's default WORKBENCH_FORM_RATE_LIMIT, per minute
FORM_ANSWERS = {
    "school_id": "01224",
    "sex": "female",
    "minority": "no",
    "ses": "0.5",
    "math_score": "52",
    "age": "",
    "consent": "yes",
}


@dataclass
class System:
    env: dict[str, str]
    web: str
    home: Path

    def workbench(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(WORKBENCH), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=900,
            start_new_session=True,  # no terminal, as from a script: a prompt reads standard input
        )

    def client(self) -> DbApiClient:
        token = (self.home / "var" / "secrets" / "db_api_token").read_text().strip()
        return DbApiClient(self.env["WORKBENCH_DB_API_ADDRESS"], token, timeout=60)


@dataclass
class Run:
    """A `workbench run` as typed: what it printed and the record of the run it started."""

    done: subprocess.CompletedProcess
    record: dict[str, Any]

    @property
    def said(self) -> str:
        return f"exit {self.done.returncode}\nstdout:\n{self.done.stdout}\nstderr:\n{self.done.stderr}"


def _succeeded(done: subprocess.CompletedProcess, what: str) -> None:
    """A step the later ones build on: a failure here is the earlier step's, named as such."""
    if done.returncode != 0:
        pytest.fail(f"`{what}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}")


def _run(system: System, *args: str) -> Run:
    done = system.workbench("run", *args)
    run_ids = set(re.findall(r"^run (\S+): ", done.stdout, flags=re.MULTILINE))
    assert len(run_ids) == 1, (
        f"`workbench run {' '.join(args)}` printed no single run's lines:\n{done.stdout}"
    )
    (run_id,) = run_ids
    with system.client() as db:
        record = db.get_document("runs", run_id)
    assert record is not None, f"no record of run {run_id}"
    return Run(done, dict(record))


def _processed_keys(system: System) -> set[str]:
    with system.client() as db:
        return {doc["_id"] for doc in db.list_documents("processed", limit=1000)}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    home = tmp_path_factory.mktemp("user-commands").resolve()
    notebooks = home / "notebooks"
    shutil.copytree(PROJECT_DIR / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    env, web = quiet_system_env(home, notebooks_dir=str(notebooks))
    with workbench_up(env, home / "up.log"):
        yield System(env, web, home)


# --- The steps, each once, in the order a user takes them --------------------------------------


@dataclass
class Demo:
    refused: subprocess.CompletedProcess  # with an account that may only submit
    raw_after_refused: int
    done: subprocess.CompletedProcess  # with an admin account
    raw: int


@pytest.fixture(scope="module")
def demo(system: System) -> Demo:
    for user, scope in ((DEMO_USER, "admin"), ("submitter", "submit"), (READER, "results:read")):
        added = system.workbench("users", "add", user, "--scope", scope, "--password-stdin", stdin=PASSWORD)
        _succeeded(added, f"workbench users add {user} --scope {scope} --password-stdin")
    size = ["--students", str(STUDENTS), "--schools", "40"]
    refused = system.workbench(
        "demo", *size, "--user", "submitter", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    with system.client() as db:
        raw_after_refused = db.count("raw")
    done = system.workbench("demo", *size, "--user", DEMO_USER, "--password-stdin", stdin=f"{PASSWORD}\n")
    with system.client() as db:
        raw = db.count("raw")
    return Demo(refused, raw_after_refused, done, raw)


@pytest.fixture(scope="module")
def clean(system: System, demo: Demo) -> Run:
    _succeeded(demo.done, "workbench demo --user")
    return _run(system, "clean", "-p", "batch_size", "2000")


@pytest.fixture(scope="module")
def process(system: System, clean: Run) -> Run:
    _succeeded(clean.done, "workbench run clean -p batch_size 2000")
    return _run(system, "process", "--timeout", "600")


@dataclass
class Analysis:
    created: subprocess.CompletedProcess
    run: Run


@pytest.fixture(scope="module")
def analysis(system: System, process: Run) -> Analysis:
    _succeeded(process.done, "workbench run process --timeout 600")
    created = system.workbench("new", "analysis", ANALYSIS)
    _succeeded(created, f"workbench new analysis {ANALYSIS}")
    return Analysis(created, _run(system, ANALYSIS))


# --- workbench demo --user U --password-stdin --------------------------------------------------


def test_demo_as_an_admin_account_with_its_password_on_stdin_stores_every_record(demo: Demo) -> None:
    assert demo.done.returncode == 0, demo.done.stdout + demo.done.stderr
    summary = re.search(
        r"students: ([\d,]+) in ([\d,]+) records: ([\d,]+) stored, ([\d,]+) already stored, ([\d,]+) refused",
        demo.done.stdout,
    )
    assert summary, demo.done.stdout
    students, records, stored, already, refused = (int(g.replace(",", "")) for g in summary.groups())
    assert (students, already, refused) == (STUDENTS, 0, 0)
    assert stored == records >= STUDENTS
    assert demo.raw == records


def test_demo_as_an_account_without_admin_is_refused_saying_so_and_stores_nothing(demo: Demo) -> None:
    """Importing the schools needs `admin` (the REST table), so `--user` names an admin account."""
    assert demo.refused.returncode == 1, demo.refused.stdout + demo.refused.stderr
    assert "the demo needs admin" in demo.refused.stderr
    assert demo.raw_after_refused == 0


# --- workbench run clean -p batch_size 2000 ----------------------------------------------------


def test_run_clean_with_a_batch_size_succeeds_and_fills_cleaned(
    system: System, demo: Demo, clean: Run
) -> None:
    assert clean.done.returncode == 0, clean.said
    assert clean.record["status"] == "succeeded", clean.record
    with system.client() as db:
        raw, cleaned, quarantine = db.count("raw"), db.count("cleaned"), db.count("quarantine")
    assert raw == 0 and cleaned > 0
    # Exact resubmissions collapse into one record; every other record is cleaned or quarantined.
    assert cleaned + quarantine <= demo.raw and cleaned >= 0.8 * STUDENTS


def test_run_clean_records_and_injects_the_batch_size_it_was_given(clean: Run) -> None:
    assert clean.record["parameters"]["batch_size"] == 2000, clean.record["parameters"]
    output = Path(clean.record["output_path"])
    assert f"output notebook: {output}" in clean.done.stdout
    book = nbformat.read(output, as_version=4)
    injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1, [c.metadata.get("tags") for c in book.cells]
    assert re.search(r"^batch_size = 2000$", injected[0].source, flags=re.MULTILINE), injected[0].source


# --- workbench run process --timeout 600 -------------------------------------------------------


def test_run_process_with_a_timeout_succeeds_and_fills_processed(system: System, process: Run) -> None:
    assert process.done.returncode == 0, process.said
    assert process.record["status"] == "succeeded", process.record
    assert process.record["error"] is None
    assert f"run {process.record['run_id']}: succeeded" in process.done.stdout
    keys = _processed_keys(system)
    assert {"descriptives:overall", "ols:math_score", "mixedlm:null"} <= keys, sorted(keys)
    with system.client() as db:
        cleaned = db.count("cleaned")
    assert 0.8 * STUDENTS <= process.record["counts"]["students"] <= cleaned


# --- workbench new analysis gender_gap; workbench run gender_gap -------------------------------


def test_new_analysis_creates_the_notebook_in_the_notebooks_folder(
    system: System, analysis: Analysis
) -> None:
    notebook = system.home / "notebooks" / "analyses" / f"{ANALYSIS}.ipynb"
    assert f"Created {notebook}." in analysis.created.stdout
    assert not (PROJECT_DIR / "notebooks" / "analyses" / f"{ANALYSIS}.ipynb").exists()


def test_run_of_the_new_analysis_succeeds_and_stores_its_documents(
    system: System, analysis: Analysis
) -> None:
    assert analysis.run.done.returncode == 0, analysis.run.said
    assert analysis.run.record["notebook"] == ANALYSIS
    assert analysis.run.record["status"] == "succeeded", analysis.run.record
    keys = {key for key in _processed_keys(system) if key.startswith(f"{ANALYSIS}:")}
    assert keys == {f"{ANALYSIS}:math_by_group"}


def test_the_new_analysis_results_are_listed_for_a_results_reader(system: System, analysis: Analysis) -> None:
    assert analysis.run.done.returncode == 0, analysis.run.said
    with httpx.Client(base_url=system.web, timeout=60) as http:
        token = http.post("/api/v1/auth/token", data={"username": READER, "password": PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        index = http.get("/api/v1/results", headers=headers)
        assert index.status_code == 200, index.text
        listed = {item["key"] for item in index.json()}
        assert f"{ANALYSIS}:math_by_group" in listed, sorted(listed)
        document = http.get(f"/api/v1/results/{ANALYSIS}:math_by_group", headers=headers)
    assert document.status_code == 200, document.text
    assert document.json()["run_id"] == analysis.run.record["run_id"]


# --- The form at its default rate limit (last: nothing after it posts the form) ----------------


@dataclass
class FormPosts:
    statuses: list[int]
    last: httpx.Response
    raw_added: int


@pytest.fixture(scope="module")
def form_posts(system: System) -> FormPosts:
    """21 form pages opened first (GET is not limited), then sent one after another from 127.0.0.1."""
    with system.client() as db:
        before = db.count("raw")
    with httpx.Client(base_url=system.web, timeout=60) as http:
        pages = []
        for _ in range(FORM_LIMIT + 1):
            page = http.get("/")
            assert page.status_code == 200, page.text[:500]
            pages.append({name: _hidden(page.text, name) for name in ("csrf", "nonce")})
        sent = [http.post("/", data={**FORM_ANSWERS, **hidden}) for hidden in pages]
    with system.client() as db:
        added = db.count("raw") - before
    return FormPosts([r.status_code for r in sent], sent[-1], added)


def _hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name} on the form page"
    return match.group(1)


def test_the_form_takes_twenty_posts_a_minute_from_one_address_and_refuses_the_next(
    form_posts: FormPosts,
) -> None:
    assert form_posts.statuses == [303] * FORM_LIMIT + [429]
    assert form_posts.raw_added == FORM_LIMIT
    wait = re.search(
        r"Too many submissions from your address\. Please wait (\d+) seconds\.", form_posts.last.text
    )
    assert wait and 1 <= int(wait.group(1)) <= 60, form_posts.last.text[:2000]


def test_the_forms_429_says_when_to_retry_in_a_retry_after_header(form_posts: FormPosts) -> None:
    assert form_posts.last.status_code == 429
    assert 1 <= int(form_posts.last.headers.get("Retry-After", "0")) <= 60, dict(form_posts.last.headers)
