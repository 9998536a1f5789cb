"""A run's documents and its release are published as one, through a real db-api on the embedded
store. A run that died between writing its documents and its release (killed, the db-api away past
the retries, its lease lost) left the public seeing figures its release did not hold, so the next
run differenced against figures the public had not seen: with one late student, a cell the public
had seen at n showed n + 1, and gave that student's values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pytest

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import CLEANED, PROCESSED, RELEASES, SCHOOLS
from pipeline_lib.process import publication
from pipeline_lib.process.analysis_run import AnalysisRun, UnfinishedPublication
from pipeline_lib.process.job import RELEASE_ID, UnreadableRelease, previous_release, run_process
from pipeline_lib.process.results import ResultDocument, suppress
from tests.conftest import TOKEN
from tests.pipeline_lib.process.analysis import simulated
from tests.pipeline_lib.process.test_release_store import a_release

K = 5
WHEN = dt.datetime(2026, 12, 1, 6, tzinfo=dt.UTC)


class Cut(RuntimeError):
    """The run dies here (a kill, the db-api gone): nothing after it is written."""


class DyingClient(DbApiClient):
    """A real client whose writes to `processed` stop after `writes` of them, or after the one of
    document `last`."""

    def __init__(self, client: DbApiClient, writes: int = 1_000, last: str | None = None) -> None:
        super().__init__(client.address, TOKEN)
        self.writes, self.last = writes, last

    def put_document(self, collection: str, doc_id: str, document: Mapping[str, Any]) -> bool:
        if collection == PROCESSED:
            if self.writes == 0:
                raise Cut(f"died before writing {doc_id}")
            self.writes -= 1
            if doc_id == self.last:
                self.writes = 0
        return super().put_document(collection, doc_id, document)


def _doc(key: str, run_id: str) -> ResultDocument:
    return ResultDocument(
        key=key, title=key, analysis="descriptives", run_id=run_id, computed_at=WHEN, n_input=100
    )


def _processed(client: DbApiClient) -> dict[str, str]:
    return {d["_id"]: d["run_id"] for d in client.list_documents(PROCESSED, limit=1_000)}


def _stage(client: DbApiClient) -> list[str]:
    return sorted(d["_id"] for d in client.list_documents(RELEASES, limit=1_000) if "/" in d["_id"])


def test_a_publication_cut_off_after_its_commit_point_is_finished_by_the_next(
    sqlite_client: DbApiClient,
) -> None:
    first = [_doc(f"d{i}", "r1") for i in range(3)]
    publication.publish(sqlite_client, RELEASE_ID, first, {"cells": [], "documents": []})
    released = a_release().to_dict()
    with DyingClient(sqlite_client, writes=1) as dying, pytest.raises(Cut):
        publication.publish(dying, RELEASE_ID, [_doc(f"d{i}", "r2") for i in range(3)], released)
    assert _processed(sqlite_client) == {"d0": "r2", "d1": "r1", "d2": "r1"}  # what the public sees
    # Committed: the release to difference against is the one the public is being shown.
    assert previous_release(sqlite_client) == a_release()
    assert publication.finish_unfinished(sqlite_client, RELEASE_ID)
    assert _processed(sqlite_client) == {"d0": "r2", "d1": "r2", "d2": "r2"}
    assert previous_release(sqlite_client) == a_release() and _stage(sqlite_client) == []
    assert not publication.finish_unfinished(sqlite_client, RELEASE_ID)


def test_a_publication_cut_off_before_its_commit_point_leaves_everything_as_it_was(
    sqlite_client: DbApiClient,
) -> None:
    publication.publish(sqlite_client, RELEASE_ID, [_doc("d0", "r1")], a_release().to_dict())

    class DiesStaging(DyingClient):
        def put_document(self, collection: str, doc_id: str, document: Mapping[str, Any]) -> bool:
            if doc_id.endswith("/staged-release"):
                raise Cut("died while staging")
            return super().put_document(collection, doc_id, document)

    with DiesStaging(sqlite_client, writes=10) as dying, pytest.raises(Cut):
        publication.publish(dying, RELEASE_ID, [_doc("d0", "r2")], {"cells": [], "documents": []})
    assert _processed(sqlite_client) == {"d0": "r1"} and previous_release(sqlite_client) == a_release()
    assert not publication.finish_unfinished(sqlite_client, RELEASE_ID)
    publication.publish(sqlite_client, RELEASE_ID, [_doc("d0", "r3")], {"cells": [], "documents": []})
    assert _processed(sqlite_client) == {"d0": "r3"} and _stage(sqlite_client) == []


def test_a_publication_also_removes_what_it_names_and_only_once_committed(sqlite_client: DbApiClient) -> None:
    publication.publish(
        sqlite_client, "analysis-x", [_doc("x:a", "r1"), _doc("x:b", "r1")], a_release().to_dict()
    )
    with DyingClient(sqlite_client, writes=0) as dying, pytest.raises(Cut):
        publication.publish(dying, "analysis-x", [_doc("x:a", "r2")], a_release().to_dict(), removed=["x:b"])
    assert _processed(sqlite_client) == {"x:a": "r1", "x:b": "r1"}
    assert publication.finish_unfinished(sqlite_client, "analysis-x")
    assert _processed(sqlite_client) == {"x:a": "r2"}


def _overall_math(client: DbApiClient, *, analyst: bool = False) -> tuple[int, float]:
    """The public (n, mean) of math_score over every student, as public views (or analysts) see it."""
    stored = client.get_document(PROCESSED, "descriptives:overall")
    assert stored is not None
    document = ResultDocument.model_validate({k: v for k, v in stored.items() if k != "_id"})
    public = suppress(document, K, analyst=analyst)
    table = next(t for t in public.tables if t.name == "statistics")
    n, mean = table.columns.index("n"), table.columns.index("mean")
    row = next(r for r in table.rows if "math_score" in r)
    return row[n], row[mean]


@pytest.mark.slow  # three process runs
def test_a_run_that_died_mid_publication_cannot_let_the_next_give_away_a_late_student(
    sqlite_client: DbApiClient,
) -> None:
    records = simulated.cleaned_records(simulated.students(1_520, 15, seed=31))
    sqlite_client.write(SCHOOLS, simulated.schools(15, seed=31), mode="upsert", key="school_id")

    def add(rows: pd.DataFrame) -> None:
        sqlite_client.write(CLEANED, rows, mode="upsert", key="submission_id")

    add(records.iloc[:1_500])
    run_process(None, sqlite_client, run_id="r1", seed=3, k_min_group=K)
    add(records.iloc[1_500:1_505])  # k more: the overall figures publish again
    with DyingClient(sqlite_client, last="descriptives:overall") as dying, pytest.raises(Cut):
        run_process(None, dying, run_id="r2", seed=3, k_min_group=K)
    seen = _overall_math(sqlite_client)
    assert seen[0] == 1_505, seen  # the public saw it in the document r2 wrote before it died
    add(records.iloc[1_505:1_506])  # one late student
    run_process(None, sqlite_client, run_id="r3", seed=3, k_min_group=K)
    assert _overall_math(sqlite_client, analyst=True)[0] == 1_506  # the exact figure has them
    assert _overall_math(sqlite_client) == seen  # held (was n 1,506: that student's score by difference)


def test_a_stage_left_by_a_run_that_died_before_its_commit_point_is_removed_by_the_next(
    sqlite_client: DbApiClient,
) -> None:
    class DiesStaging(DyingClient):
        def put_document(self, collection: str, doc_id: str, document: Mapping[str, Any]) -> bool:
            if doc_id.endswith("/staged-release"):
                raise Cut("died while staging")
            return super().put_document(collection, doc_id, document)

    with DiesStaging(sqlite_client) as dying, pytest.raises(Cut):
        publication.publish(dying, RELEASE_ID, [_doc("gone", "r1")], a_release().to_dict())
    assert _stage(sqlite_client) == [f"{RELEASE_ID}/staged/gone"]
    publication.publish(sqlite_client, RELEASE_ID, [_doc("d0", "r2")], a_release().to_dict())
    assert _stage(sqlite_client) == [] and _processed(sqlite_client) == {"d0": "r2"}


def test_a_publication_that_lost_its_staged_release_stops_the_run_saying_how_to_reset(
    sqlite_client: DbApiClient,
) -> None:
    with DyingClient(sqlite_client, writes=0) as dying, pytest.raises(Cut):
        publication.publish(dying, RELEASE_ID, [_doc("d0", "r1")], a_release().to_dict())
    sqlite_client.delete_ids(RELEASES, [f"{RELEASE_ID}/staged-release"])  # a store that lost it
    with pytest.raises(UnreadableRelease, match="workbench release reset"):
        previous_release(sqlite_client)


@pytest.mark.slow  # a process run and an analysis
def test_an_analysis_publishes_nothing_while_the_process_runs_publication_is_cut_off(
    sqlite_client: DbApiClient,
) -> None:
    """`processed` holds part of it, its release is staged: protected against a mix about to be
    replaced, the notebook's figures could give away what the next publication shows."""
    sqlite_client.write(SCHOOLS, simulated.schools(15, seed=31), mode="upsert", key="school_id")
    records = simulated.cleaned_records(simulated.students(600, 15, seed=31))
    sqlite_client.write(CLEANED, records, mode="upsert", key="submission_id")
    with DyingClient(sqlite_client, writes=2) as dying, pytest.raises(Cut):
        run_process(None, dying, run_id="r1", seed=3, k_min_group=K)
    analysis = AnalysisRun.start(None, sqlite_client, name="gap", run_id="gap-1", k_min_group=K, seed=3)
    counts = analysis.students.groupby("sex", observed=True).agg(n=("math_score", "count")).reset_index()
    analysis.publish_table(counts.astype({"sex": str}), key="gap:by_sex", title="By sex", labels=["sex"])
    with pytest.raises(UnfinishedPublication, match="next process run finishes it"):
        analysis.finish()
    assert "gap:by_sex" not in _processed(sqlite_client)
