"""The issue's four attacks against a real system: a db-api on the embedded store, tiny schools,
real process runs (`run_process`, Spark local[2]), then what anyone reads: the public views of the
stored documents (`suppress(doc, k)`, what `/api/v1/results/{key}` serves). Each attack fails to
recover the hidden value; analysts' figures are the same as without protection."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from db_api.server import start_server
from db_api.store.sqlite import SqliteStore
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import PROCESSED, RELEASES, RUNS
from pipeline_lib.process import job as process_job
from pipeline_lib.process.results import PublicResult, ResultDocument, suppress
from tests.conftest import TOKEN
from tests.pipeline_lib.process.analysis import simulated
from tests.pipeline_lib.process.disclosure import population

pytestmark = [pytest.mark.spark, pytest.mark.slow]

K = 5
# A lone student in S0000; S0001 has five (q1, median, q3 would be three of their five scores).
SIZES = [1, 5, 12, 20, 8, 30, 9, 25, 40]
FIRST = dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC)
SECOND = dt.datetime(2026, 11, 29, 7, tzinfo=dt.UTC)


@dataclass
class System:
    frame: pd.DataFrame  # the students of the first run
    late: pd.DataFrame  # one student submitted between the runs
    first: dict[str, ResultDocument]  # as stored after each run
    second: dict[str, ResultDocument]
    client: DbApiClient

    def public(self, run: dict[str, ResultDocument], key: str) -> PublicResult:
        return suppress(run[key], K)


def _stored(client: DbApiClient) -> dict[str, ResultDocument]:
    return {d["_id"]: ResultDocument.model_validate(d) for d in client.list_documents(PROCESSED, limit=200)}


@pytest.fixture(scope="module")
def system(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    path: Path = tmp_path_factory.mktemp("disclosure") / "store.sqlite3"
    server = start_server(SqliteStore(path), "127.0.0.1:0", token=TOKEN, max_message_bytes=4 * 1024 * 1024)
    try:
        with DbApiClient(f"127.0.0.1:{server.port}", TOKEN, max_message_bytes=64 * 1024 * 1024) as client:
            frame = population.students(SIZES)
            client.write("schools", population.schools(frame), mode="upsert", key="school_id")
            client.write("cleaned", simulated.cleaned_records(frame), mode="upsert", key="submission_id")
            process_job.run_process(spark, client, run_id="first", k_min_group=K, seed=1, now=FIRST)
            first = _stored(client)
            late = population.students([1], seed=77).assign(school_id="S0002", sector="private")
            late["submission_id"] = ["late-1"]
            client.write("cleaned", simulated.cleaned_records(late), mode="upsert", key="submission_id")
            process_job.run_process(spark, client, run_id="second", k_min_group=K, seed=1, now=SECOND)
            yield System(frame, late, first, _stored(client), client)
    finally:
        server.stop(grace=1)


def _nothing_shown(*results: PublicResult) -> bool:
    """Withheld (the audit failed; fail closed): then the attacker reads no figure at all."""
    withheld = [r for r in results if r.withheld]
    assert all(r.tables == [] and r.n_input is None and r.withheld.startswith("withheld:") for r in withheld)
    return bool(withheld)


def _rows(result: PublicResult, table: str, variable: str = "math_score") -> list[dict]:
    found = next((t for t in result.tables if t.name == table), None)
    rows = [dict(zip(found.columns, row, strict=True)) for row in found.rows] if found else []
    return [r for r in rows if r.get("variable", variable) == variable]


def test_differencing_a_table_and_its_total_does_not_give_a_lone_students_score(system: System) -> None:
    overall = system.public(system.first, "descriptives:overall")
    by_school = system.public(system.first, "descriptives:by_school")
    if _nothing_shown(overall, by_school):
        return
    total = _rows(overall, "statistics")[0]
    schools = _rows(by_school, "statistics")
    lone = next(r for r in schools if r["school_id"] == "S0000")
    assert lone["n"] is None and lone["mean"] is None
    shown = [r for r in schools if r["n"] is not None]
    rest_n = total["n"] - sum(r["n"] for r in shown)
    rest_sum = total["n"] * total["mean"] - sum(r["n"] * r["mean"] for r in shown)
    truth = system.frame.loc[system.frame["school_id"] == "S0000", "math_score"].iloc[0]
    assert rest_n > 1 and abs(rest_sum / rest_n - truth) > 0.5 and abs(rest_sum - truth) > 0.5
    for scope in ("by_sector", "by_sex", "by_minority"):
        rows = _rows(system.public(system.first, f"descriptives:{scope}"), "statistics")
        assert sum(r["n"] is None for r in rows) != 1, scope  # never one hidden part beside its total


def test_histogram_bins_do_not_prove_that_someone_scored_in_a_hidden_range(system: System) -> None:
    histogram = system.public(system.first, "distribution:math_score")
    if _nothing_shown(histogram):
        return
    bins = _rows(histogram, "histogram")
    hidden = [b for b in bins if b["n"] is None]
    scores = system.frame["math_score"]
    assert any(not ((scores >= b["lower"]) & (scores < b["upper"])).any() for b in hidden)
    remainder = system.first["distribution:math_score"].n_input - sum(
        b["n"] for b in bins if b["n"] is not None
    )
    assert remainder == 0 or len(hidden) > 1  # never one bin's count by subtraction


def test_quantiles_min_and_max_of_a_group_of_five_are_not_shown(system: System) -> None:
    schools = _rows(system.public(system.first, "descriptives:by_school"), "statistics")
    five = next(r for r in schools if r["school_id"] == "S0001")
    assert five["q1"] is None and five["median"] is None and five["q3"] is None
    assert "min" not in five and "max" not in five


def test_differencing_two_releases_does_not_give_a_late_students_score(system: System) -> None:
    before = system.public(system.first, "descriptives:overall")
    after = system.public(system.second, "descriptives:overall")
    if _nothing_shown(after):  # with tiny schools the audit withholds the descriptives this run
        return
    old, new = _rows(before, "statistics")[0], _rows(after, "statistics")[0]
    guess = new["n"] * new["mean"] - old["n"] * old["mean"]
    assert new["n"] == old["n"] and abs(guess - system.late["math_score"].iloc[0]) > 0.5
    notes = next(t for t in after.tables if t.name == "statistics").notes
    assert any(n and n.startswith("not updated") for n in notes)


def test_a_late_students_histogram_bin_keeps_its_previous_figures_with_their_date(system: System) -> None:
    before = system.public(system.first, "distribution:math_score")
    after = system.public(system.second, "distribution:math_score")
    if _nothing_shown(before, after):
        return
    score = system.late["math_score"].iloc[0]
    old, new = _rows(before, "histogram"), _rows(after, "histogram")
    (i,) = [i for i, b in enumerate(old) if b["lower"] <= score < b["upper"]]
    assert new[i]["n"] == old[i]["n"]  # held (or hidden both times): the one new student does not show
    notes = next(t for t in after.tables if t.name == "histogram").notes
    held = [j for j, note in enumerate(notes) if note and note.startswith("not updated")]
    assert held and all(new[j] == old[j] for j in held)
    assert "since 2026-11-29 06:00 UTC" in str(notes[held[0]])


def test_analysts_see_exact_figures_unchanged_by_the_protection(system: System) -> None:
    for key, doc in system.second.items():
        assert doc.protection is not None, key
        exact = suppress(doc, K, analyst=True)
        assert exact.exact and (exact.withheld is None) == (not doc.protection.withheld), key
        without = suppress(doc.model_copy(update={"protection": None}), K, analyst=True)
        assert exact.tables == without.tables, key
    overall = _rows(suppress(system.second["descriptives:overall"], K, analyst=True), "statistics")[0]
    assert overall["n"] == len(system.frame) + 1  # the late student is in the analysts' figures


def test_the_release_is_kept_for_analysts_only(system: System) -> None:
    assert process_job.RELEASE_ID not in system.second
    raw = system.client.get_document(RELEASES, process_job.RELEASE_ID)
    assert raw is not None and raw["cells"]
    assert system.client.get_document(RUNS, process_job.RELEASE_ID) is None  # runs hold run records only
