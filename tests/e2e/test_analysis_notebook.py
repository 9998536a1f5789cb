"""A new analysis notebook, end to end as a user makes one: `workbench new analysis` from the template
(in a copy of the notebooks folder), its worked example edited to group by school, an `after process`
line in the schedule, the clean and process jobs run exactly as their installed cron lines run them
(so the analysis runs as the process run's follower), then its result read through the API, as a
reader (schools under k blank, and any hidden with them) and as an analyst (every other school
exact), and on the `/results` pages.

The system is `workbench db-api` and `workbench web` on free ports, filled by `workbench demo` with
100 schools, a few of them with fewer than k students.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pandas as pd
import pytest

from pipeline_lib.cli.addresses import http_answers
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.settings import PROJECT_DIR
from tests.processes import start_workbench, stop_gracefully
from tests.wire_servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.spark]

WORKBENCH = [sys.executable, "-m", "pipeline_lib.cli"]
NAME = "school_math"
KEY = f"{NAME}:math_by_group"
K = 5  # the default WORKBENCH_K_MIN_GROUP, which the system runs with
PASSWORD = "analysis-password-1"
# 2,000 students in 100 schools (seed 2): a few schools get fewer than k of them.
DEMO = ["--students", "2000", "--schools", "100", "--seed", "2"]
EXAMPLE = 'group_by = ["sector"]'
EDITED = 'group_by = ["school_id"]'
SCHEDULE = f"*/10 * * * * clean\n5 * * * * process\nafter process {NAME}\n"


@dataclass
class System:
    env: dict[str, str]
    web: str
    home: Path
    created: str  # what `workbench new analysis` printed
    cron_table: str  # what `workbench schedule install --print` printed
    tokens: dict[str, str]
    schools: pd.DataFrame  # by school_id: n, mean_math, mean_ses of its students, from `cleaned`

    def small_schools(self) -> set[str]:
        small = set(self.schools.index[self.schools["n"] < K])
        assert small, f"the demo data ({' '.join(DEMO)}) should have a school of fewer than {K} students"
        return small

    def get(self, path: str, user: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return httpx.get(f"{self.web}{path}", headers=headers, timeout=30)

    def result(self, user: str, key: str = KEY) -> dict[str, Any]:
        answer = self.get(f"/api/v1/results/{key}", user)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def _workbench(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [*WORKBENCH, *args], env=env, input=stdin, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"workbench {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _edit_example(notebook: Path) -> None:
    """What the analyst does in the lab: the worked example's grouping, changed in its cell."""
    book = nbformat.read(notebook, as_version=4)
    cells = [c for c in book.cells if c.cell_type == "code" and EXAMPLE in c.source.splitlines()]
    assert len(cells) == 1, f"the template should have one cell with the line {EXAMPLE!r}"
    cells[0].source = cells[0].source.replace(EXAMPLE, EDITED)
    nbformat.write(book, notebook)


def _cron_jobs(table: str) -> tuple[dict[str, str], dict[str, str]]:
    """A crontab's environment lines, and each job's command by the notebook it runs, as cron
    reads them: five time fields, then a command whose `\\%` is a plain `%` (the daily
    `workbench prune-runs` line left out)."""
    environment, jobs = {}, {}
    for line in table.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"[A-Z_]+=", line):
            name, value = line.split("=", 1)
            environment[name] = value
            continue
        command = line.split(None, 5)[5].replace(r"\%", "%")
        if re.search(r"/workbench'? prune-runs ", command):
            continue
        notebook = re.search(r"/workbench' run (\w+) |/workbench run (\w+) ", command)
        assert notebook, line
        jobs[notebook.group(1) or notebook.group(2)] = command
    return environment, jobs


def _run_as_cron(table: str, notebook: str) -> None:
    """The job's line as cron runs it: `sh -c` with the table's variables and little else."""
    environment, jobs = _cron_jobs(table)
    cron_env = {**environment, "HOME": os.environ.get("HOME", "/root"), "LOGNAME": "workbench"}
    done = subprocess.run(
        [environment.get("SHELL", "/bin/sh"), "-c", jobs[notebook]],
        env=cron_env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    log = re.search(r">> (\S+) 2>&1$", jobs[notebook])
    assert log, jobs[notebook]
    written = Path(shlex.split(log.group(1))[0])
    text = written.read_text() if written.exists() else "(no log)"
    assert done.returncode == 0, f"cron line for {notebook} exited {done.returncode}:\n{done.stderr}\n{text}"


def _students_by_school(env: dict[str, str]) -> pd.DataFrame:
    """Each school's students as the analyses count them: an identified student's latest record."""
    token = (Path(env["WORKBENCH_DATA_DIR"]) / "secrets" / "db_api_token").read_text().strip()
    with DbApiClient(env["WORKBENCH_DB_API_ADDRESS"], token, timeout=60) as db:
        cleaned = db.scan_pandas("cleaned", arrow_strings=False)
    identified = cleaned["student_ref"].notna()
    latest = (
        cleaned[identified]
        .sort_values(["received_at", "submission_id"], ascending=False)
        .drop_duplicates(["school_id", "student_ref"])
    )
    students = pd.concat([cleaned[~identified], latest])
    return students.groupby("school_id").agg(
        n=("math_score", "count"), mean_math=("math_score", "mean"), mean_ses=("ses", "mean")
    )


def _token(web: str, user: str) -> str:
    answer = httpx.post(f"{web}/api/v1/auth/token", data={"username": user, "password": PASSWORD}, timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    home = tmp_path_factory.mktemp("analysis").resolve()
    notebooks = home / "notebooks"
    shutil.copytree(PROJECT_DIR / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (home / "crontab").write_text(SCHEDULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    db_port, web_port = free_port(), free_port()
    env.update(
        WORKBENCH_DATA_DIR=str(home / "var"),
        WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{db_port}",
        WORKBENCH_WEB_PORT=str(web_port),
        WORKBENCH_SPARK_MASTER="local[2]",
        WORKBENCH_NOTEBOOKS_DIR=str(notebooks),
        WORKBENCH_SCHEDULE_FILE=str(home / "crontab"),
        WORKBENCH_DASHBOARD_SNAPSHOTS="false",  # not what this module tests; the quick start renders them
    )
    web = f"http://127.0.0.1:{web_port}"

    created = _workbench(env, "new", "analysis", NAME)
    _edit_example(notebooks / "analyses" / f"{NAME}.ipynb")
    # A user's crontab (no user field): what `install` writes for anyone but root.
    cron_table = _workbench(env, "schedule", "install", "--target", "user", "--print")

    servers = [start_workbench("db-api", env, home / "db-api.log")]
    try:
        # The db-api writes the token the web app reads: start the web app once it is serving.
        _workbench(env, "db-api", "ping", "--timeout", "60")
        servers.append(start_workbench("web", env, home / "web.log"))
        deadline = time.monotonic() + 60
        while not http_answers(f"{web}/readyz"):
            assert servers[-1].poll() is None and time.monotonic() < deadline, (home / "web.log").read_text()
            time.sleep(0.3)
        for user, scopes in {"reader": ["results:read"], "analyst": ["results:read", "analyst"]}.items():
            scope_options = [f"--scope={s}" for s in scopes]
            _workbench(env, "users", "add", user, *scope_options, "--password-stdin", stdin=PASSWORD)
        _workbench(env, "demo", *DEMO, "--url", web)
        for job in ("clean", "process"):
            _run_as_cron(cron_table, job)
        tokens = {user: _token(web, user) for user in ("reader", "analyst")}
        yield System(env, web, home, created, cron_table, tokens, _students_by_school(env))
    finally:
        for server in reversed(servers):
            stop_gracefully(server)


def _rows(result: dict[str, Any], table: str = "table") -> list[dict[str, Any]]:
    found = next(t for t in result["tables"] if t["name"] == table)
    return [dict(zip(found["columns"], row, strict=True)) for row in found["rows"]]


def _by_school(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["school_id"]: r for r in _rows(result)}


def _notes(result: dict[str, Any], table: str = "table") -> dict[str, str | None]:
    found = next(t for t in result["tables"] if t["name"] == table)
    return {row[0]: note for row, note in zip(found["rows"], found["notes"], strict=True)}


@contextmanager
def _signed_in(system: System, user: str) -> Iterator[httpx.Client]:
    """A browser's session: signed in on the login page, its cookie kept."""
    with httpx.Client(base_url=system.web, timeout=30, follow_redirects=True) as http:
        csrf = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        signed = http.post("/login", data={"username": user, "password": PASSWORD, "csrf": csrf})
        assert signed.status_code == 200 and str(signed.url).endswith("/results"), signed.text[:2000]
        yield http


def _page_rows(page: str) -> list[tuple[bool, list[str]]]:
    """The body rows of a result page's tables: (marked suppressed, the cells' text)."""
    found = []
    for attributes, cells in re.findall(r"<tr( class=\"suppressed\")?>(.*?)</tr>", page, flags=re.DOTALL):
        texts = [
            html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", cells)
        ]
        if texts:
            found.append((bool(attributes), texts))
    return found


# --- The notebook and its schedule ------------------------------------------------------------


def test_new_analysis_writes_the_notebook_into_the_configured_notebooks_folder(system: System) -> None:
    notebook = system.home / "notebooks" / "analyses" / f"{NAME}.ipynb"
    assert f"Created {notebook}." in system.created
    assert f"after process {NAME}" in system.created
    assert not (PROJECT_DIR / "notebooks" / "analyses" / f"{NAME}.ipynb").exists()
    source = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells)
    assert "__NAME__" not in source and f'NAME = "{NAME}"' in source and EDITED in source


def test_the_installed_cron_lines_run_clean_and_process_and_chain_the_analysis(system: System) -> None:
    """`after` lines get no cron line of their own: the process line runs its followers."""
    _, jobs = _cron_jobs(system.cron_table)
    assert set(jobs) == {"clean", "process"}
    schedule = shlex.quote(str(system.home / "crontab"))
    assert all(f"--followers-from {schedule} --triggered-by cron" in c for c in jobs.values())


def test_the_analysis_ran_once_as_the_follower_of_the_scheduled_process_run(system: System) -> None:
    runs = system.get("/api/v1/runs?limit=100", "analyst")
    assert runs.status_code == 200, runs.text
    by_notebook: dict[str, list[dict[str, Any]]] = {}
    for run in runs.json():
        by_notebook.setdefault(run["notebook"], []).append(run)
    assert {n: len(r) for n, r in by_notebook.items()} == {"clean": 1, "process": 1, NAME: 1}
    (clean,), (process,), (analysis,) = by_notebook["clean"], by_notebook["process"], by_notebook[NAME]
    assert [r["status"] for r in (clean, process, analysis)] == ["succeeded"] * 3
    assert {r["triggered_by"] for r in (clean, process, analysis)} == {"cron"}
    assert analysis["after_run_id"] == process["run_id"]
    assert process["after_run_id"] is None


# --- The result in the API --------------------------------------------------------------------


def test_the_results_index_lists_the_analysis_result_with_its_grouping(system: System) -> None:
    for user in ("reader", "analyst"):
        index = system.get("/api/v1/results", user)
        assert index.status_code == 200, index.text
        entry = next((r for r in index.json() if r["key"] == KEY), None)
        assert entry is not None, [r["key"] for r in index.json()]
        assert entry["title"] == "Math score by school_id"


def test_the_analysts_table_has_each_schools_students_as_cleaned(system: System) -> None:
    """The edited grouping took effect: one row per school, with the count and means of its students
    (each identified student's latest cleaned record) for every school of at least k students."""
    result, truth = system.result("analyst"), system.schools
    exact = _by_school(result)
    assert exact.keys() == set(truth.index) and len(exact) > 50
    assert result["n_input"] == truth["n"].sum()
    for school, row in exact.items():
        if truth.loc[school, "n"] < K:
            continue  # no one sees these figures: the next test
        assert row["n"] == truth.loc[school, "n"], school
        assert row["mean_math"] == pytest.approx(truth.loc[school, "mean_math"], rel=1e-9), school
        assert row["mean_ses"] == pytest.approx(truth.loc[school, "mean_ses"], rel=1e-9, abs=1e-12), school


def test_a_school_under_k_shows_its_name_but_no_figures_to_readers_or_analysts(system: System) -> None:
    small = system.small_schools()
    for user in ("reader", "analyst"):
        rows = _by_school(system.result(user))
        for school in small:
            assert rows[school] == {"school_id": school, "n": None, "mean_math": None, "mean_ses": None}, user
        notes = _notes(system.result(user))
        assert {notes[school] for school in small} == {f"fewer than {K} students"}, user


def test_a_reader_sees_each_other_school_exactly_or_not_at_all_and_an_analyst_sees_them_all(
    system: System,
) -> None:
    """Disclosure control may hide more than the small schools from the public (so that theirs
    cannot be derived): analysts see those exactly."""
    public, exact = system.result("reader"), system.result("analyst")
    assert public["exact"] is False and exact["exact"] is True and public["withheld"] is None
    shown, exact_rows = _by_school(public), _by_school(exact)
    others = set(shown) - system.small_schools()
    assert all(exact_rows[school]["n"] is not None for school in others)
    hidden = {school for school in others if shown[school]["n"] is None}
    for school in others - hidden:
        assert shown[school] == exact_rows[school], school
    for school in hidden:
        assert {shown[school][c] for c in ("n", "mean_math", "mean_ses")} == {None}, school
    assert len(hidden) < len(others) / 2


# --- The result on the web pages --------------------------------------------------------------


def test_the_results_page_shows_a_card_for_the_analysis(system: System) -> None:
    with _signed_in(system, "reader") as http:
        page = http.get("/results")
    assert page.status_code == 200
    assert f'<a href="/results/{KEY}">Math score by school_id</a>' in page.text


def test_the_result_page_shows_the_table_without_the_small_schools_figures(system: System) -> None:
    small, exact = system.small_schools(), _by_school(system.result("analyst"))
    with _signed_in(system, "reader") as http:
        first = http.get(f"/results/{KEY}")
        assert first.status_code == 200 and "Math score by school_id" in first.text
        pages = int(m.group(1)) if (m := re.search(r"\(page 1 of (\d+)\)", first.text)) else 1
        rows = _page_rows(first.text)
        for number in range(2, pages + 1):
            rows += _page_rows(http.get(f"/results/{KEY}", params={"table": "table", "page": number}).text)
    by_school = {cells[0]: (suppressed, cells) for suppressed, cells in rows}
    assert by_school.keys() == exact.keys()
    for school in small:
        suppressed, cells = by_school[school]
        assert suppressed and cells[1:4] == ["suppressed"] * 3, cells
    shown = next(s for s, (suppressed, _) in by_school.items() if not suppressed)
    assert by_school[shown][1][1] == f"{exact[shown]['n']:,.4g}"
