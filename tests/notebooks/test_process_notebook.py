"""`notebooks/process.ipynb` run by papermill after `clean.ipynb`, against a real db-api on the
embedded store: every result lands in `processed`, valid, stamped, reproducible, and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys
from pipeline_lib.process.results import ResultDocument, suppress
from pipeline_lib.runs.notebook_counts import counts_from_notebook
from tests.pipeline_lib.process.analysis import simulated
from tests.pipeline_lib.process.comparable import comparable

pytestmark = [pytest.mark.slow, pytest.mark.spark]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
N_SCHOOLS = 30


def raw_submissions(n: int, seed: int = 17) -> pd.DataFrame:
    """Submissions as students type them, from the simulated population: decimal commas, a few
    values out of range, an unknown school, and one student who answered twice."""
    students = simulated.students(n, N_SCHOOLS, seed=seed)
    rng = np.random.default_rng(seed)

    def text(values: pd.Series, digits: int) -> list[str | None]:
        return [None if pd.isna(v) else f"{v:.{digits}f}" for v in values]

    raw = pd.DataFrame(
        {
            "submission_id": [f"p{i:06d}" for i in range(n)],
            "received_at": [f"2026-11-29T05:{i // 60 % 60:02d}:{i % 60:02d}+00:00" for i in range(n)],
            "source": "api",
            "school_id": students["school_id"],
            "student_ref": [str(i) if i % 3 == 0 else None for i in range(n)],
            "sex": students["sex"].map({"female": "F", "male": "boy", "other": "x"}),
            "minority": np.where(students["minority"], "yes", "no"),
            "ses": [s.replace(".", ",") if rng.random() < 0.3 else s for s in text(students["ses"], 2)],
            "math_score": text(students["math_score"], 1),
            "age": text(students["age"], 0),
            "study_hours_week": text(students["study_hours_week"], 1),
            "absences": text(students["absences"], 0),
            "consent": "yes",
        }
    )
    raw.loc[raw.index[:5], "math_score"] = "250"  # out of range: quarantined
    raw.loc[raw.index[5:8], "school_id"] = "NOPE"  # unknown school: quarantined
    again = raw.iloc[[9]].assign(submission_id="p-again", received_at="2026-11-29T07:00:00+00:00", ses="0,5")
    return pd.concat([raw, again], ignore_index=True)


@pytest.fixture
def db(notebook_db: tuple[RunningServer, DbApiClient]) -> tuple[RunningServer, DbApiClient]:
    notebook_db[1].write("schools", simulated.schools(N_SCHOOLS, seed=17), mode="upsert", key="school_id")
    return notebook_db


def _execute(notebook: str, output: Path, client: DbApiClient, **parameters: object) -> dict:
    papermill.execute_notebook(
        str(NOTEBOOKS / notebook),
        str(output),
        kernel_name="python3",
        progress_bar=False,
        parameters={"db_api_address": client.address, "spark_master": "local[2]", **parameters},
    )
    return nbformat.read(output, as_version=4)


# Written by the process step for the dashboards, beside the analyses.
DASHBOARD_KEYS = (
    "distribution:math_score",
    "distribution:ses",
    "distribution:schools",
    "relation:ses_math",
    "quality:reject_reasons",
    "quality:top_changes",
)


def _processed(client: DbApiClient) -> dict[str, ResultDocument]:
    return {d["_id"]: ResultDocument.model_validate(d) for d in client.list_documents("processed", limit=100)}


def test_process_after_clean_stores_every_result_and_reports_it(db: tuple, tmp_path: Path) -> None:
    _, client = db
    client.write("raw", raw_submissions(3_000), key="submission_id")
    _execute("clean.ipynb", tmp_path / "clean-out.ipynb", client, run_id="clean-1", dry_run=False)
    cleaned = client.count("cleaned")
    assert cleaned == 3_000 - 8 + 1 and client.count("quarantine") == 8

    # Spark here (auto would take pandas for so few records): the rerun below and the other tests
    # take the default, and tests/pipeline_lib/process/test_job.py proves both store the same.
    output = _execute(
        "process.ipynb", tmp_path / "process-out.ipynb", client, run_id="process-1", seed=7, engine="spark"
    )
    everything = _processed(client)
    for_dashboards = {key: doc for key, doc in everything.items() if key not in result_keys.ANALYSIS_KEYS}
    assert set(for_dashboards) == set(DASHBOARD_KEYS)
    for doc in for_dashboards.values():
        assert doc.run_id == "process-1"
        suppress(doc, k=5)
    stored = {key: doc for key, doc in everything.items() if key in result_keys.ANALYSIS_KEYS}
    assert set(stored) == set(result_keys.ANALYSIS_KEYS)
    mark = client.high_water_mark("cleaned")
    for key, doc in stored.items():
        assert doc.status == "ok", (key, doc.error)
        assert doc.run_id == "process-1" and doc.input_high_water_mark == mark
        assert doc.n_input == cleaned - 1  # the student who answered twice counts once
        assert doc.summary and doc.tables
        suppress(doc, k=5)  # every stored document can be shown publicly
    effects = stored["mixedlm:school_effects"]
    random_effects = next(t for t in effects.tables if t.name == "random_effects")
    assert len(random_effects.rows) == N_SCHOOLS
    assert stored["classification:at_risk"].parameters["beats_baseline"] is True

    counts = counts_from_notebook(output)
    assert counts["records_in"] == cleaned
    assert "spark engine" in nbformat.writes(output)
    assert counts["results_written"] == len(result_keys.ANALYSIS_KEYS) + len(DASHBOARD_KEYS)
    assert counts["results_failed"] == 0
    text = nbformat.writes(output)
    for doc in (stored[key] for key in result_keys.ANALYSIS_KEYS):
        assert doc.summary.replace("'", "&#x27;")[:60] in text or doc.summary[:60] in text, doc.key
    # The disclosure cell: the audit's verdict, agreeing with what the run stored.
    withheld = sorted(key for key, doc in everything.items() if doc.protection and doc.protection.withheld)
    assert ("The audit failed for" if withheld else "The audit passed") in text
    assert all(f"`{key}`" in text for key in withheld)
    assert "rows so others cannot be derived" in text
    images = [o for cell in output.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == len(result_keys.ANALYSIS_KEYS)  # a figure per result

    # An analyst edits the formula in a copy of the notebook (as its JSON) and reruns it: the stored
    # coefficients are those of a direct statsmodels fit of the new formula on the same students.
    formula = "math_score ~ ses + study_hours_week + C(sector)"
    edited = _with_formula(tmp_path / "edited.ipynb", formula, cov="nonrobust")
    _execute(str(edited), tmp_path / "edited-out.ipynb", client, run_id="process-2", seed=7)
    ols = _processed(client)[result_keys.OLS]
    assert ols.status == "ok" and ols.run_id == "process-2"
    assert ols.parameters["formula"] == formula and ols.parameters["cov_type"] == "nonrobust"
    table = next(t for t in ols.tables if t.name == "coefficients")
    stored_terms = {row[0]: dict(zip(table.columns, row, strict=True)) for row in table.rows}
    direct = _direct_ols(client, "math_score ~ ses + study_hours_week + C(sector, Treatment('public'))")
    names = {"Intercept": "Intercept", "ses": "ses", "study_hours_week": "study_hours_week"}
    names |= {f"C(sector, Treatment('public'))[T.{s}]": f"sector[{s}]" for s in ("catholic", "private")}
    assert set(stored_terms) == {names[t] for t in direct.params.index}
    for term, estimate in direct.params.items():
        row = stored_terms[names[str(term)]]
        assert row["estimate"] == pytest.approx(estimate, rel=1e-9, abs=1e-9), term
        assert row["se"] == pytest.approx(direct.bse[term], rel=1e-9), term
    assert next(t for t in ols.tables if t.name == "fit").rows[2][1] == direct.nobs


def _with_formula(path: Path, formula: str, *, cov: str) -> Path:
    """A copy of process.ipynb with the OLS cell's formula and standard errors replaced."""
    notebook = nbformat.read(NOTEBOOKS / "process.ipynb", as_version=4)
    old = '"math_score ~ ses + C(sex) + minority + C(sector)", cov="HC3"'
    (cell,) = [c for c in notebook.cells if old in c.source]
    cell.source = cell.source.replace(old, f'"{formula}", cov="{cov}"')
    nbformat.write(notebook, path)
    return path


def _direct_ols(client: DbApiClient, formula: str) -> Any:
    """statsmodels' own OLS on the students the run analyses: each student's latest cleaned record
    (a repeat answer replaces the earlier one), with their school's sector."""
    import statsmodels.formula.api as smf

    cleaned = client.scan_pandas("cleaned").sort_values("received_at")
    named = cleaned[cleaned["student_ref"].notna()].drop_duplicates(["school_id", "student_ref"], keep="last")
    latest = pd.concat([named, cleaned[cleaned["student_ref"].isna()]])
    schools = client.scan_pandas("schools", columns=["school_id", "sector"])
    students = latest.merge(schools, on="school_id").astype({"sector": str})
    return smf.ols(formula, students).fit()


def test_rerunning_on_the_same_input_gives_the_same_documents(db: tuple, tmp_path: Path) -> None:
    _, client = db
    client.write("raw", raw_submissions(1_500, seed=3), key="submission_id")
    _execute("clean.ipynb", tmp_path / "clean.ipynb", client, dry_run=False)
    _execute("process.ipynb", tmp_path / "first.ipynb", client, run_id="first", seed=2)
    first = _processed(client)
    _execute("process.ipynb", tmp_path / "second.ipynb", client, run_id="second", seed=2)
    second = _processed(client)
    assert {d.run_id for d in second.values()} == {"second"}
    for key in result_keys.ANALYSIS_KEYS:
        assert comparable(first[key], "run_id", "computed_at") == comparable(
            second[key], "run_id", "computed_at"
        ), key
