"""The kept disclosure release, through a real db-api on the embedded store: it reads back as it was
put, and one that cannot be read stops the process run before anything is written (fail closed)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pyspark.sql import SparkSession

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.collections import CLEANED, PROCESSED, RELEASES, SCHOOLS
from pipeline_lib.process import job as process_job
from pipeline_lib.process.disclosure import Release
from pipeline_lib.process.disclosure.cells import STUDENTS, CellKey
from pipeline_lib.process.disclosure.releases import PublishedCell, PublishedDocument
from pipeline_lib.process.job import RELEASE_ID, UnreadableRelease, previous_release
from pipeline_lib.process.results import PublicResult
from tests.pipeline_lib.process.analysis import simulated

WHEN = dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC)
PUBLIC_SECTOR = CellKey(frozenset({("sector", "public")}), STUDENTS)


def a_release() -> Release:
    """Two published cells (one with a row) and one model document held whole."""
    cell = PublishedCell(
        n=42.0,
        sums={"math_score": (2_100.0, 108_000.0), "ses": (None, None)},
        published_at=WHEN,
        rows={("descriptives:by_sector", "statistics", ("public", "math_score")): ("public", 42, 50.0)},
    )
    everyone = PublishedCell(n=120.0, sums={}, published_at=WHEN)
    document = PublishedDocument(
        n=120,
        published_at=WHEN,
        public=PublicResult(
            key="mixedlm:null",
            title="Null model",
            analysis="mixedlm",
            scope="null",
            run_id="run-1",
            computed_at=WHEN,
            n_input=120,
            k_min_group=5,
            summary="",
            tables=[],
        ).model_dump(mode="json"),
    )
    return Release(
        {PUBLIC_SECTOR: cell, CellKey(frozenset(), STUDENTS): everyone}, {"mixedlm:null": document}
    )


def _corrupted(field: str, value: Any) -> dict[str, Any]:
    """The stored form of `a_release` with one part changed (`cells.0.n`: a cell's field), or
    removed (`value` None)."""
    stored = a_release().to_dict()
    *path, name = field.split(".")
    part = stored[path[0]][int(path[1])] if path else stored
    if value is None:
        del part[name]
    else:
        part[name] = value
    return stored


def test_a_release_put_in_the_store_reads_back_equal(sqlite_client: DbApiClient) -> None:
    release = a_release()
    sqlite_client.put_document(RELEASES, RELEASE_ID, release.to_dict())
    assert previous_release(sqlite_client) == release


def test_without_a_stored_release_there_is_no_previous_one(sqlite_client: DbApiClient) -> None:
    assert previous_release(sqlite_client) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cells", "garbage"),
        ("cells.0.n", None),  # a cell without its count
        ("cells.0.published_at", "yesterday"),
        ("cells.0.published_at", 1_700_000_000),
        ("cells.0.sums", {"math_score": [2_100.0]}),  # a sum without its sum of squares
        ("documents.0.key", None),
        ("documents.0.n", "many"),
    ],
)
def test_an_unreadable_release_says_where_it_is_that_nothing_was_written_and_how_to_reset(
    sqlite_client: DbApiClient, field: str, value: Any
) -> None:
    sqlite_client.put_document(RELEASES, RELEASE_ID, _corrupted(field, value))
    with pytest.raises(UnreadableRelease) as raised:
        previous_release(sqlite_client)
    message = str(raised.value)
    assert f"collection {RELEASES!r}" in message and f"document {RELEASE_ID!r}" in message
    assert "nothing was written" in message and "workbench release reset" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cells", None),  # the key gone: read as a release that published nothing
        ("cells.0.n", "many"),  # a count that is not a number
        ("documents.0.public", "garbage"),  # not a public view
        ("documents.0.public", {"key": "mixedlm:null"}),  # not a whole public view
        ("cells.0.published_at", "2026-11-29T06:00:00"),  # a time without its zone
    ],
)
def test_a_release_missing_its_cells_or_with_figures_of_the_wrong_type_is_unreadable(
    sqlite_client: DbApiClient, field: str, value: Any
) -> None:
    sqlite_client.put_document(RELEASES, RELEASE_ID, _corrupted(field, value))
    with pytest.raises(UnreadableRelease):
        previous_release(sqlite_client)


def _fill(client: DbApiClient, n: int = 1_500, n_schools: int = 15) -> None:
    students = simulated.students(n, n_schools, seed=31)
    client.write(SCHOOLS, simulated.schools(n_schools, seed=31), mode="upsert", key="school_id")
    client.write(CLEANED, simulated.cleaned_records(students), mode="upsert", key="submission_id")


def _processed(client: DbApiClient) -> dict[str, dict[str, Any]]:
    return {d["_id"]: d for d in client.list_documents(PROCESSED, limit=1_000)}


@pytest.mark.slow
@pytest.mark.spark
def test_a_run_over_an_unreadable_release_stops_before_writing_anything(
    spark: SparkSession, sqlite_client: DbApiClient
) -> None:
    _fill(sqlite_client)
    process_job.run_process(spark, sqlite_client, run_id="r1", seed=3)
    first = _processed(sqlite_client)
    assert first and {d["run_id"] for d in first.values()} == {"r1"}
    corrupted = {**sqlite_client.get_document(RELEASES, RELEASE_ID), "cells": "garbage"}
    corrupted.pop("_id", None)
    sqlite_client.put_document(RELEASES, RELEASE_ID, corrupted)

    with pytest.raises(UnreadableRelease):
        process_job.run_process(spark, sqlite_client, run_id="r2", seed=3)
    assert _processed(sqlite_client) == first
    kept = sqlite_client.get_document(RELEASES, RELEASE_ID)
    assert kept is not None and kept["cells"] == "garbage"  # not replaced by the run's release
