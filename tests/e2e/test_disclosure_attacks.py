"""The issue's four attacks on published results, written as an attacker would run them: against a
real system (the `workbench db-api` and `workbench web` servers on free ports), filled with tiny
schools through the public HTTP API and processed by `workbench run all`, read as a `results:read`
user over HTTP. Each attack is arithmetic on the JSON of `GET /api/v1/results/{key}` and fails to
recover the hidden value; an analyst reading the same endpoints sees the exact figures.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from pipeline_lib.cli.addresses import http_answers
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import PROCESSED, RELEASES
from pipeline_lib.contract.fields import STUDENT_FIELDS
from pipeline_lib.process.results import ResultDocument, held_note, suppress
from tests.pipeline_lib.process.disclosure import population
from tests.processes import start_workbench, stop_gracefully
from tests.wire_servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.spark]

WORKBENCH = [sys.executable, "-m", "pipeline_lib.cli"]
K = 5
# A lone student in S0000 (public sector); S0001 has five (their q1, median and q3 would be three
# of their five scores). Sectors go public, catholic, private, public, ...
SIZES = [1, 5, 12, 20, 8, 30, 9, 25, 40]
LONE_SCHOOL, FIVE_SCHOOL, LATE_SCHOOL = "S0000", "S0001", "S0002"
RELEASE_ID = "disclosure-release"  # where the process run keeps what it published (docs/privacy.md)
MATH = (-10.0, 100.0)  # the contract's range of math_score: what an attacker knows of any score
# docs/privacy.md: a lone student's score stays free over half of itself either way, at least 5.5
# points each way (a tenth of the range, times the protection ratio 0.5).
FREE = 5.5
PASSWORD = "attack-password-1"
# The results the attacks read.
ATTACKED = [
    *(f"descriptives:{scope}" for scope in ("overall", "by_school", "by_sector", "by_sex", "by_minority")),
    "distribution:math_score",
]
COLUMNS = ["school_id", "sex", "minority", "ses", "math_score", "age", "study_hours_week", "absences"]


@dataclass
class Release:
    """What one reader saw after one `workbench run all`: every result, by key."""

    index: list[dict[str, Any]]
    results: dict[str, dict[str, Any]]


@dataclass
class System:
    env: dict[str, str]
    web: str
    data_dir: Path
    students: pd.DataFrame  # as submitted before the first run
    late: dict[str, Any]  # the one student submitted between the runs
    public: tuple[Release, Release]  # what the attacker read after each run
    exact: tuple[Release, Release]  # what the analyst read after each run
    tokens: dict[str, str]

    def get(self, path: str, user: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return httpx.get(f"{self.web}{path}", headers=headers, timeout=30)

    def db(self) -> DbApiClient:
        token = (self.data_dir / "secrets" / "db_api_token").read_text().strip()
        return DbApiClient(self.env["WORKBENCH_DB_API_ADDRESS"], token, timeout=60)


def _workbench(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [*WORKBENCH, *args], env=env, input=stdin, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"workbench {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _run_all(env: dict[str, str]) -> None:
    out = _workbench(env, "run", "all")
    statuses = re.findall(r"^run \S+: (\w+) in ", out, flags=re.MULTILINE)
    assert statuses == ["succeeded", "succeeded"], out


def _token(web: str, user: str) -> str:
    answer = httpx.post(f"{web}/api/v1/auth/token", data={"username": user, "password": PASSWORD}, timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _csv(frame: pd.DataFrame) -> str:
    """The students as a school's export would have them: one text row each, blanks for missing."""
    rows = frame.assign(
        minority=frame["minority"].map({True: "yes", False: "no"}),
        age=frame["age"].astype("Int64"),
        absences=frame["absences"].astype("Int64"),
        consent="yes",
    )
    return rows[[*COLUMNS, "consent", "submission_id"]].to_csv(index=False, lineterminator="\n")


def _submit_everyone(web: str, admin: str, frame: pd.DataFrame) -> None:
    headers = {"Authorization": f"Bearer {admin}"}
    schools = population.schools(frame)
    schools["size"] = schools["school_id"].map(frame["school_id"].value_counts())
    sent = httpx.post(
        f"{web}/api/v1/schools/bulk",
        content=schools.to_csv(index=False, lineterminator="\n"),
        headers={**headers, "Content-Type": "text/csv"},
        timeout=30,
    )
    assert sent.status_code == 200 and sent.json()["stored"] == len(SIZES), sent.text
    sent = httpx.post(
        f"{web}/api/v1/submissions/bulk",
        content=_csv(frame),
        headers={**headers, "Content-Type": "text/csv"},
        timeout=60,
    )
    assert sent.status_code == 200, sent.text
    assert (sent.json()["stored"], sent.json()["refused"]) == (len(frame), 0), sent.text


def _read(web: str, token: str) -> Release:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=web, headers=headers, timeout=30) as http:
        index = http.get("/api/v1/results")
        assert index.status_code == 200, index.text
        results = {}
        for item in index.json():
            answer = http.get(f"/api/v1/results/{item['key']}")
            assert answer.status_code == 200, answer.text
            results[item["key"]] = answer.json()
    return Release(index.json(), results)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    home = tmp_path_factory.mktemp("attacks").resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    db_port, web_port = free_port(), free_port()
    env.update(
        WORKBENCH_DATA_DIR=str(home / "var"),
        WORKBENCH_DB_API_ADDRESS=f"127.0.0.1:{db_port}",
        WORKBENCH_WEB_PORT=str(web_port),
        WORKBENCH_SPARK_MASTER="local[2]",
        WORKBENCH_K_MIN_GROUP=str(K),
        WORKBENCH_DASHBOARD_SNAPSHOTS="false",  # not what this module tests; the quick start renders them
    )
    web = f"http://127.0.0.1:{web_port}"
    servers = [start_workbench("db-api", env, home / "db-api.log")]
    try:
        # The db-api writes the token the web app reads: start the web app once it is serving.
        _workbench(env, "db-api", "ping", "--timeout", "60")
        servers.append(start_workbench("web", env, home / "web.log"))
        deadline = time.monotonic() + 60
        while not http_answers(f"{web}/readyz"):
            assert servers[-1].poll() is None and time.monotonic() < deadline, (home / "web.log").read_text()
            time.sleep(0.3)
        for user, scopes in {
            "loader": ["admin", "submit"],
            "attacker": ["results:read"],
            "analyst": ["results:read", "analyst"],
        }.items():
            _workbench(
                env,
                "users",
                "add",
                user,
                *(f"--scope={s}" for s in scopes),
                "--password-stdin",
                stdin=PASSWORD,
            )
        tokens = {user: _token(web, user) for user in ("loader", "attacker", "analyst")}

        students = population.students(SIZES)
        _submit_everyone(web, tokens["loader"], students)
        _run_all(env)
        first = (_read(web, tokens["attacker"]), _read(web, tokens["analyst"]))

        late = population.students([1], seed=77).iloc[0].to_dict()
        late.update(school_id=LATE_SCHOOL, sector="private")
        body = {c: late[c] for c in COLUMNS if not (isinstance(late[c], float) and math.isnan(late[c]))}
        body = {**body, "minority": bool(body["minority"]), "consent": True}
        sent = httpx.post(
            f"{web}/api/v1/submissions",
            json=body,
            headers={"Authorization": f"Bearer {tokens['loader']}"},
            timeout=30,
        )
        assert sent.status_code == 201, sent.text
        _run_all(env)
        second = (_read(web, tokens["attacker"]), _read(web, tokens["analyst"]))
        yield System(
            env, web, home / "var", students, late, (first[0], second[0]), (first[1], second[1]), tokens
        )
    finally:
        for server in reversed(servers):
            stop_gracefully(server)


# --- What the attacker does with the JSON -----------------------------------------------------


def _rows(result: dict[str, Any], table: str, variable: str | None = "math_score") -> list[dict[str, Any]]:
    """A table of a result as records; a descriptives table narrowed to one variable."""
    found = next(t for t in result["tables"] if t["name"] == table)
    rows = [dict(zip(found["columns"], row, strict=True)) for row in found["rows"]]
    return [r for r in rows if variable is None or r.get("variable", variable) == variable]


def _notes(result: dict[str, Any], table: str) -> list[str | None]:
    return list(next(t for t in result["tables"] if t["name"] == table)["notes"])


def _moments(row: dict[str, Any]) -> tuple[int, float, float]:
    """A group's count, sum and sum of squares, from its published n, mean and SD."""
    n, mean, sd = row["n"], row["mean"], row["sd"] or 0.0
    return n, n * mean, (n - 1) * sd * sd + n * mean * mean


def _pin(rest: tuple[int, float, float], bounds: tuple[float, float]) -> tuple[float, float]:
    """Where one student of a group of `rest` = (count, sum, sum of squares) can lie: with the others
    anywhere in `bounds` (linear), and no further from the group's mean than its spread allows
    (Cauchy-Schwarz on the sum of squares, which the audit does not model)."""
    m, s, q = rest
    lo, hi = bounds
    if m == 1:
        return s, s
    linear = (max(lo, s - (m - 1) * hi), min(hi, s - (m - 1) * lo))
    spread = math.sqrt(max(0.0, (m - 1) / m * (q - s * s / m)))
    return max(linear[0], s / m - spread), min(linear[1], s / m + spread)


def _protected(interval: tuple[float, float], truth: float, bounds: tuple[float, float]) -> bool:
    """docs/privacy.md: the value stays free over half of itself either way (at least a tenth of
    its field's range times the ratio 0.5), cut to what the range itself allows."""
    width = max(0.5 * abs(truth), 0.05 * (bounds[1] - bounds[0]))
    return interval[0] <= max(bounds[0], truth - width) and interval[1] >= min(bounds[1], truth + width)


def _bounds(variable: str) -> tuple[float, float]:
    field = next(f for f in STUDENT_FIELDS if f.name == variable)
    assert field.minimum is not None and field.maximum is not None
    return float(field.minimum), float(field.maximum)


def _rest(total: dict[str, Any], parts: list[dict[str, Any]]) -> tuple[int, float, float]:
    """A total minus its shown parts: the hidden parts' count, sum and sum of squares together."""
    shown = [_moments(r) for r in parts if r["n"] is not None]
    n, s, q = _moments(total)
    return n - sum(p[0] for p in shown), s - sum(p[1] for p in shown), q - sum(p[2] for p in shown)


def _lone_students_rests(release: Release, variable: str) -> list[tuple[int, float, float]]:
    """Every subtraction that leaves a group holding the lone student of S0000: everyone minus the
    shown schools, and S0000's sector minus its shown schools (each school row names its sector)."""
    overall = _rows(release.results["descriptives:overall"], "statistics", variable)[0]
    schools = _rows(release.results["descriptives:by_school"], "statistics", variable)
    sectors = _rows(release.results["descriptives:by_sector"], "statistics", variable)
    lone = next(r for r in schools if r["school_id"] == LONE_SCHOOL)
    sector = next(r for r in sectors if r["sector"] == lone["sector"])
    pairs = [(overall, schools), (sector, [r for r in schools if r["sector"] == lone["sector"]])]
    # A hidden total gives nothing to subtract from.
    return [_rest(total, parts) for total, parts in pairs if total["n"] is not None]


# --- The attacks ------------------------------------------------------------------------------


def test_the_attacked_results_are_published_not_withheld(system: System) -> None:
    """The attacks below must beat protection, not an empty page: the documents they read show figures."""
    for release in system.public:
        for key in ATTACKED:
            result = release.results[key]
            assert result["withheld"] is None and result["tables"] and not result["exact"], key


def test_differencing_a_table_and_its_total_does_not_give_a_lone_students_values(system: System) -> None:
    first = system.public[0]
    schools = _rows(first.results["descriptives:by_school"], "statistics")
    assert next(r for r in schools if r["school_id"] == LONE_SCHOOL)["n"] is None
    lone = system.students[system.students["school_id"] == LONE_SCHOOL].iloc[0]
    overall = first.results["descriptives:overall"]
    variables = [r["variable"] for r in _rows(overall, "statistics", None)]
    for variable in variables:
        truth = lone[variable]
        if pd.isna(truth):
            continue  # the lone student gave no value: there is nothing to recover
        for rest in _lone_students_rests(first, variable):
            interval = _pin(rest, _bounds(variable))
            assert rest[0] != 1 and _protected(interval, truth, _bounds(variable)), (variable, rest, interval)
    # The same subtraction on the exact figures (no complementary suppression) does give the score:
    # the attack is real, and only the protection stops it.
    exact = _lone_students_rests(system.exact[0], "math_score")[0]
    assert exact[0] == 1 and exact[1] == pytest.approx(lone["math_score"], abs=1e-6)


def test_no_breakdown_leaves_one_hidden_group_beside_its_total(system: System) -> None:
    for release in system.public:
        for scope in ("by_school", "by_sector", "by_sex", "by_minority"):
            result = release.results[f"descriptives:{scope}"]
            for variable in {r["variable"] for r in _rows(result, "statistics", None)}:
                hidden = [r for r in _rows(result, "statistics", variable) if r["n"] is None]
                assert len(hidden) != 1, (scope, variable, hidden)


def test_histogram_bins_do_not_give_a_hidden_bins_count_or_prove_someone_scored_there(
    system: System,
) -> None:
    histogram = system.public[0].results["distribution:math_score"]
    bins = _rows(histogram, "histogram", None)
    hidden = [b for b in bins if b["n"] is None]
    remainder = histogram["n_input"] - sum(b["n"] for b in bins if b["n"] is not None)
    scores = system.students["math_score"]
    truth = [int(((scores >= b["lower"]) & (scores < b["upper"])).sum()) for b in hidden]
    # Every bin of the range is listed: a hidden label does not prove that anyone scored there.
    assert 0 in truth and any(t > 0 for t in truth), truth
    for count in truth:
        # By subtraction, each hidden bin holds between these many students (each at most k-1).
        lo = max(0, remainder - (K - 1) * (len(hidden) - 1))
        hi = min(K - 1, remainder)
        assert lo == 0 and hi == K - 1 and lo <= count <= hi, (lo, hi, count)


def test_quantiles_of_a_group_of_five_do_not_give_its_minimum_and_maximum(system: System) -> None:
    five = system.students.loc[system.students["school_id"] == FIVE_SCHOOL, "math_score"].sort_values()
    public = next(
        r for r in _rows(system.public[0].results["descriptives:by_school"], "statistics")
        if r["school_id"] == FIVE_SCHOOL
    )  # fmt: skip
    assert public["n"] == 5 and public["mean"] is not None
    assert (public["q1"], public["median"], public["q3"]) == (None, None, None)
    assert "min" not in public and "max" not in public
    # With them, q1, median, q3, mean and SD of five scores give the other two: the attack is real.
    exact = next(
        r for r in _rows(system.exact[0].results["descriptives:by_school"], "statistics")
        if r["school_id"] == FIVE_SCHOOL
    )  # fmt: skip
    _, s, q = _moments(exact)
    middle = [exact["q1"], exact["median"], exact["q3"]]
    pair_sum, pair_squares = s - sum(middle), q - sum(v * v for v in middle)
    gap = math.sqrt(2 * pair_squares - pair_sum**2)
    assert (pair_sum - gap) / 2 == pytest.approx(five.iloc[0], abs=1e-4)
    assert (pair_sum + gap) / 2 == pytest.approx(five.iloc[-1], abs=1e-4)


def test_no_public_row_of_fewer_than_2k_students_shows_quantiles_in_any_release(system: System) -> None:
    """WORKBENCH_K_QUANTILES (2k): a row held at its previous figures too."""
    for release in system.public:
        for key in ("descriptives:by_school", "descriptives:by_sector", "descriptives:by_sex"):
            for row in _rows(release.results[key], "statistics", None):
                if row["n"] is not None and row["n"] < 2 * K:
                    assert (row["q1"], row["median"], row["q3"]) == (None, None, None), (key, row)


def test_one_late_submission_keeps_the_overall_figures_with_their_date(system: System) -> None:
    """Not withheld (one late student once withheld every descriptives document): held."""
    before, after = (r.results["descriptives:overall"] for r in system.public)
    assert after["withheld"] is None and after["n_input"] == before["n_input"] + 1
    assert _rows(after, "statistics", None) == _rows(before, "statistics", None)
    since = dt.datetime.fromisoformat(before["computed_at"])
    math_row = [r["variable"] for r in _rows(after, "statistics", None)].index("math_score")
    assert _notes(after, "statistics")[math_row] == held_note(K, since)
    old, new = _rows(before, "statistics")[0], _rows(after, "statistics")[0]
    guess = new["n"] * new["mean"] - old["n"] * old["mean"]
    assert abs(guess - system.late["math_score"]) > FREE


def _math_means(release: Release) -> dict[tuple[str, str, int, str], tuple[int, float]]:
    """Every published (count, mean math score) of a group, by result, table, row and column; and
    the null model's grand mean with its number of students."""
    found = {}
    for key, result in release.results.items():
        for table in result["tables"]:
            if "n" not in table["columns"]:
                continue
            for i, row in enumerate(_rows(result, table["name"], None)):
                math_mean = (
                    "mean" if row.get("variable") == "math_score" or "math" in table["name"] else "mean_math"
                )
                if row["n"] is not None and row.get(math_mean) is not None:
                    found[(key, table["name"], i, math_mean)] = (row["n"], row[math_mean])
    estimates = {r["quantity"]: r["value"] for r in _rows(release.results["mixedlm:null"], "estimates", None)}
    found[("mixedlm:null", "estimates", 0, "grand_mean")] = (
        int(estimates["n_students"]),
        estimates["grand_mean"],
    )
    return found


def test_differencing_published_means_across_releases_does_not_give_a_late_students_score(
    system: System,
) -> None:
    """The attacker knows one student was added (every result's n_input moved by one) and looks for
    any group mean whose count moved by one: the difference of the sums is that student's value."""
    before, after = (_math_means(r) for r in system.public)
    score = system.late["math_score"]
    guesses = {
        where: after[where][0] * after[where][1] - before[where][0] * before[where][1]
        for where in before.keys() & after.keys()
        if after[where][0] - before[where][0] == 1
    }
    recovered = {where: guess for where, guess in guesses.items() if abs(guess - score) <= FREE}
    assert recovered == {}, f"the late student's score {score} from {recovered}"


def test_no_public_group_moves_by_fewer_than_k_students_between_releases(system: System) -> None:
    """The additive tables (counts, means, SDs): a row shown both times changes only with k students
    (quartiles aside: the quantile test covers them)."""
    before, after = system.public
    for key in before.results:
        if not key.startswith(("descriptives:", "distribution:", "relation:")):
            continue
        tables = zip(before.results[key]["tables"], after.results[key]["tables"], strict=True)
        for old_table, new_table in tables:
            columns = [i for i, c in enumerate(old_table["columns"]) if c not in ("q1", "median", "q3")]
            if "n" not in old_table["columns"]:
                continue
            n = old_table["columns"].index("n")
            for old, new in zip(old_table["rows"], new_table["rows"], strict=True):
                assert old[0] == new[0], (key, old, new)
                moved = [old[i] for i in columns] != [new[i] for i in columns]
                if old[n] is not None and new[n] is not None and moved:
                    assert abs(new[n] - old[n]) >= K, (key, old_table["name"], old, new)


def test_every_model_shows_the_public_what_it_showed_before_with_its_date(system: System) -> None:
    """Models, correlations and the data's quality are functions of every student, not sums: fewer
    than k new students leave each whole result as the public saw it, dated; analysts read the new
    figures and that the public sees the earlier ones."""
    before, after = system.public
    whole = [
        key
        for key, old in before.results.items()
        if not key.startswith(("descriptives:", "distribution:", "relation:"))
        and old["status"] == "ok" and old["n_input"] is not None and old["withheld"] is None
    ]  # fmt: skip
    assert {"mixedlm:null", "mixedlm:school_effects", "ols:math_score", "correlations:numeric"} <= set(whole)
    for key in whole:
        old, new = before.results[key], after.results[key]
        if system.exact[1].results[key]["status"] == "failed":  # a model may not converge: no figures
            assert new["status"] == "failed" and new["tables"] == [] and new["not_updated"] is None, key
            continue
        # `freshness` tells when the latest run was (not its figures): it moves with every run.
        assert {**new, "not_updated": None, "freshness": None} == {**old, "freshness": None}, key
        since = dt.datetime.fromisoformat(old["computed_at"])
        assert new["not_updated"] == held_note(K, since), key
        exact = system.exact[1].results[key]
        assert exact["run_id"] != old["run_id"] and exact["not_updated"].startswith("public views show"), key
    null = system.exact[1].results["mixedlm:null"]
    n_students = {r["quantity"]: r["value"] for r in _rows(null, "estimates", None)}["n_students"]
    assert n_students == len(system.students) + 1


def test_not_updated_notes_do_not_show_which_bin_a_late_students_score_fell_in(system: System) -> None:
    """A held bin keeps its count; but if only the late student's bin said "not updated", the note
    itself would place the score in that bin. So every bin shown at its earlier figures says so,
    changed or not, and the notes split the bins shown in both releases no finer than that."""
    before, after = (r.results["distribution:math_score"] for r in system.public)
    new_notes = _notes(after, "histogram")
    old_bins, bins = _rows(before, "histogram", None), _rows(after, "histogram", None)
    shown_twice = [
        i for i, (old, new) in enumerate(zip(old_bins, bins, strict=True))
        if old["n"] is not None and new["n"] is not None
    ]  # fmt: skip
    noted = {i for i in shown_twice if (new_notes[i] or "").startswith("not updated")}
    assert shown_twice and noted in (set(), set(shown_twice)), (
        f"only bins {[bins[i]['bin'] for i in sorted(noted)]} of {[bins[i]['bin'] for i in shown_twice]} "
        f"say 'not updated': the late student's score {system.late['math_score']} is among them"
    )
    assert noted  # fewer than k students joined: the shown bins keep their earlier figures, dated


# --- What analysts see ------------------------------------------------------------------------


def test_analysts_read_exact_figures_with_the_late_student(system: System) -> None:
    after = system.exact[1]
    scores = [*system.students["math_score"], system.late["math_score"]]
    for key, result in after.results.items():
        assert result["exact"] is True and result["tables"], key
        for table in result["tables"]:
            notes = {n for n in table["notes"] if n is not None}
            assert notes <= {f"fewer than {K} students"}, (key, table["name"], notes)
    overall = _rows(after.results["descriptives:overall"], "statistics")[0]
    assert overall["n"] == len(scores) == len(system.students) + 1
    assert overall["mean"] == pytest.approx(sum(scores) / len(scores), rel=1e-9)
    late_school = next(
        r
        for r in _rows(after.results["descriptives:by_school"], "statistics")
        if r["school_id"] == LATE_SCHOOL
    )
    assert late_school["n"] == SIZES[2] + 1


def test_what_analysts_read_is_the_stored_figures_unchanged_by_the_protection(system: System) -> None:
    with system.db() as db:
        stored = {d["_id"]: ResultDocument.model_validate(d) for d in db.list_documents(PROCESSED, limit=500)}
    assert set(stored) == set(system.exact[1].results)
    for key, doc in stored.items():
        assert doc.protection is not None, key
        unprotected = suppress(doc.model_copy(update={"protection": None}), K, analyst=True)
        assert system.exact[1].results[key]["tables"] == unprotected.model_dump(mode="json")["tables"], key


def test_the_release_is_kept_for_analysts_only(system: System) -> None:
    for user, runs_status in (("attacker", 403), ("analyst", 404)):
        index = system.get("/api/v1/results", user)
        assert index.status_code == 200 and RELEASE_ID not in {r["key"] for r in index.json()}
        assert system.get(f"/api/v1/results/{RELEASE_ID}", user).status_code == 404
        assert system.get(f"/api/v1/runs/{RELEASE_ID}", user).status_code == runs_status
    with system.db() as db:
        release = db.get_document(RELEASES, RELEASE_ID)
    assert release is not None and release["cells"]
