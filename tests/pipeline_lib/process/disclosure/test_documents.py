"""Whole documents held between releases: a model's figures move in public views only with k students."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

from pipeline_lib.process.analysis import descriptive_results, model_results, multilevel
from pipeline_lib.process.analysis.base import Failure
from pipeline_lib.process.disclosure import Release, protect
from pipeline_lib.process.disclosure.bins import with_empty_bins
from pipeline_lib.process.disclosure.documents import DocumentHolding, drop_rows, held_whole, hold_documents
from pipeline_lib.process.disclosure.stored import annotate
from pipeline_lib.process.results import ResultDocument, suppress
from tests.pipeline_lib.process.disclosure import population

K = 5
SCHOOLS = [20, 25, 30, 35]
LATER = population.WHEN + dt.timedelta(hours=1)
LATEST = population.WHEN + dt.timedelta(hours=2)


def _late(frame: pd.DataFrame, count: int, seed: int = 9) -> pd.DataFrame:
    extra = population.students([count], seed=seed).assign(school_id="S0001", sector="catholic")
    extra["submission_id"] = [f"late-{seed}-{i}" for i in range(count)]
    return pd.concat([frame, extra], ignore_index=True)


def _null_model(frame: pd.DataFrame, when: dt.datetime, *, fail: bool = False) -> ResultDocument:
    stamp = descriptive_results.Stamp(
        run_id=f"run-{when:%H}",
        computed_at=when,
        n_input=len(frame),
        input_high_water_mark=len(frame),
        k_min_group=K,
        seed=1,
    )
    model = Failure("mixedlm", "did not converge") if fail else multilevel.fit_null(frame)
    return model_results.null_model_document(model, stamp, sampled=False)


def _run(
    frame: pd.DataFrame, when: dt.datetime, previous: Release | None, *, fail: bool = False
) -> DocumentHolding:
    """What a process run does: protect the cells, then hold the whole documents."""
    docs = [with_empty_bins(d) for d in population.documents(frame, K)]
    docs.append(_null_model(frame, when, fail=fail))
    protection = protect(docs, k=K, previous=previous, now=when)
    return hold_documents(annotate(docs, protection, k=K), protection.release, previous, k=K, now=when)


def _public(holding: DocumentHolding, key: str = "mixedlm:null") -> dict:
    doc = next(d for d in holding.documents if d.key == key)
    # As readers get it: stored as JSON in `processed`, read back, then shown.
    return suppress(ResultDocument.model_validate(doc.model_dump(mode="json")), K).model_dump(mode="json")


def _estimates(public: dict) -> dict[str, float]:
    table = next(t for t in public["tables"] if t["name"] == "estimates")
    return {row[0]: row[1] for row in table["rows"]}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    students = population.students(SCHOOLS)
    # Schools that differ, so the multilevel model has a between-school variance to fit.
    shift = students["school_id"].map({"S0000": -12.0, "S0001": 4.0, "S0002": 9.0, "S0003": -3.0})
    return students.assign(math_score=(students["math_score"] + shift).clip(-10, 100))


@pytest.fixture(scope="module")
def first(frame: pd.DataFrame) -> DocumentHolding:
    return _run(frame, population.WHEN, None)


def test_the_first_release_publishes_models_and_keeps_their_public_view(first: DocumentHolding) -> None:
    assert first.held == frozenset()
    kept = first.release.documents["mixedlm:null"]
    assert kept.n == sum(SCHOOLS) and kept.published_at == population.WHEN
    assert kept.public == _public(first)
    assert _public(first)["not_updated"] is None
    # Descriptives and distributions are held cell by cell, never whole.
    assert set(first.release.documents) == {"mixedlm:null"}


def test_one_late_student_leaves_the_model_as_published_with_its_date(
    frame: pd.DataFrame, first: DocumentHolding
) -> None:
    second = _run(_late(frame, 1), LATER, first.release)
    assert second.held == {"mixedlm:null"}
    public, before = _public(second), _public(first)
    # The attacker's subtraction: grand mean x n_students, before and after, gives nothing.
    assert _estimates(public) == _estimates(before)
    assert public["run_id"] == before["run_id"] and public["computed_at"] == before["computed_at"]
    assert public["not_updated"] == "not updated: fewer than 5 students changed since 2026-11-29 06:00 UTC"
    # The release keeps the figures the public saw, for the next run to difference against.
    assert second.release.documents == first.release.documents
    # Analysts read the model with the late student, and that the public sees it as published.
    doc = next(d for d in second.documents if d.key == "mixedlm:null")
    exact = suppress(doc, K, analyst=True)
    assert _estimates(exact.model_dump(mode="json"))["n_students"] == sum(SCHOOLS) + 1
    assert exact.not_updated is not None and exact.not_updated.startswith("public views show this result")


def test_k_students_since_it_last_published_update_the_model(
    frame: pd.DataFrame, first: DocumentHolding
) -> None:
    second = _run(_late(frame, 1), LATER, first.release)
    third = _run(_late(frame, K), LATEST, second.release)  # K since the first release, not since the second
    assert "mixedlm:null" not in third.held
    assert _estimates(_public(third))["n_students"] == sum(SCHOOLS) + K
    assert third.release.documents["mixedlm:null"].published_at == LATEST
    assert third.release.documents["mixedlm:null"].n == sum(SCHOOLS) + K


def test_a_failed_model_says_so_and_the_release_keeps_the_last_figures(
    frame: pd.DataFrame, first: DocumentHolding
) -> None:
    failed = _run(_late(frame, 1), LATER, first.release, fail=True)
    assert failed.held == frozenset()
    assert _public(failed)["status"] == "failed" and _public(failed)["tables"] == []
    assert failed.release.documents == first.release.documents
    # One more student later: still fewer than k since the figures the public saw.
    after = _run(_late(frame, 2), LATEST, failed.release)
    assert after.held == {"mixedlm:null"} and _estimates(_public(after)) == _estimates(_public(first))


def test_only_analyses_outside_the_cell_layout_are_held_whole(first: DocumentHolding) -> None:
    whole = {d.key for d in first.documents if held_whole(d)}
    assert whole == {"mixedlm:null"}
    for key in ("ols:math_score", "correlations:numeric", "quality:reject_reasons", "newthing:effects"):
        doc = next(d for d in first.documents if d.key == "mixedlm:null").model_copy(
            update={"key": key, "analysis": key.split(":")[0]}
        )
        assert held_whole(doc), key


def test_the_release_with_its_documents_round_trips_through_json(
    frame: pd.DataFrame, first: DocumentHolding
) -> None:
    second = _run(_late(frame, 1), LATER, first.release)
    stored = Release.from_dict(second.release.to_dict())
    assert stored == second.release


def test_rows_of_held_documents_are_not_kept_in_cells_published_now(first: DocumentHolding) -> None:
    key = next(iter(first.release.cells))
    cell = first.release.cells[key]
    row = ("mixedlm:null", "school_effects", ("S0000",))
    own = ("descriptives:overall", "statistics", ("math_score",))
    rows = {row: (1.0,), own: (2.0,)}
    release = dataclasses.replace(first.release, cells={key: dataclasses.replace(cell, rows=rows)})
    assert drop_rows(release, {"mixedlm:null"}, now=cell.published_at).cells[key].rows == {own: (2.0,)}
    # A cell published earlier keeps what the public saw then.
    assert drop_rows(release, {"mixedlm:null"}, now=LATER).cells[key].rows == rows
