"""The bound on the resubmissions one cleaned record lists (`rules.MAX_DUPLICATES`): the first
received and the next MAX_DUPLICATES of a group are cleaned as before, the later ones go to
quarantine as `resubmitted_too_often` with their values as typed, and every raw id is placed once,
by either engine. A group sent 150,000 times once made a cleaned document over the db-api's 16 MiB
limit, which refused it, and every later clean with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipeline_lib.clean import pandas_engine, rules
from pipeline_lib.clean.counted_commit import CleanedTally, CountedCommit
from pipeline_lib.clean.spark_commits import Committer
from pipeline_lib.client.sync import DbApiClient
from tests.notebooks.dirty_data import SCHOOLS, dirty_raw
from tests.pipeline_lib.clean.test_cleaning import KNOWN, _comparable

SMALL = 3  # the bound in these tests, so that groups past it stay small


def _bound(monkeypatch: pytest.MonkeyPatch, value: int = SMALL) -> None:
    # raising=False: before the bound existed, the tests failed on what they check, not here.
    monkeypatch.setattr(rules, "MAX_DUPLICATES", value, raising=False)


def _too_often() -> dict[str, str]:
    code = "resubmitted_too_often"
    return {"code": code, "field": "student_ref", "message": rules.message(code, None)}


def _group(n: int, prefix: str = "g") -> tuple[pd.DataFrame, list[str]]:
    """`n` exact resubmissions of student 7 at school 1224 (spelt differently, cleaned alike), in
    an order neither their ids nor their rows follow, the last without a time (so it arrives last);
    and their ids in arrival order."""
    arrival = [f"{prefix}{(7 * i) % n:03d}" for i in range(n)]  # ids out of arrival order
    received: list[str | None] = [f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00" for i in range(n)]
    received[-1] = None
    frame = pd.DataFrame(
        {
            "submission_id": arrival,
            "received_at": received,
            "source": ["bulk"] * n,
            "school_id": [["1224", " 01224", "1224 "][i % 3] for i in range(n)],
            "student_ref": ["7"] * n,
            "sex": [["F", "girl", "female"][i % 3] for i in range(n)],
            "minority": ["no"] * n,
            "ses": [["1,5", "1.5", " 1.5"][i % 3] for i in range(n)],
            "math_score": ["50"] * n,
            "consent": ["yes"] * n,
        }
    )
    return frame.sample(frac=1, random_state=3).reset_index(drop=True), arrival


def _others() -> pd.DataFrame:
    """Student 8's two differing answers (a conflict, both kept) and a record without a student."""
    return pd.DataFrame(
        {
            "submission_id": ["o1", "o2", "o3"],
            "received_at": ["2026-01-01T00:00:00+00:00"] * 3,
            "source": ["api"] * 3,
            "school_id": ["1224"] * 3,
            "student_ref": ["8", "8", None],
            "sex": ["F"] * 3,
            "minority": ["no"] * 3,
            "ses": ["1", "2", "1"],
            "math_score": ["50"] * 3,
            "consent": ["yes"] * 3,
        }
    )


def _placed(cleaned: pd.DataFrame, quarantine: pd.DataFrame) -> list[str]:
    ids = list(cleaned["submission_id"]) + [i for others in cleaned["duplicates"] for i in others]
    return sorted(ids + list(quarantine["submission_id"]))


def test_a_group_past_the_bound_keeps_the_first_and_the_next_bound_and_quarantines_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _bound(monkeypatch)
    group, arrival = _group(10)
    raw = pd.concat([group, _others()], ignore_index=True)
    result = pandas_engine.clean(raw, KNOWN)
    cleaned = result.cleaned.set_index("submission_id")

    assert cleaned.loc[arrival[0], "duplicates"] == arrival[1 : 1 + SMALL]
    assert sorted(cleaned.index) == sorted([arrival[0], "o1", "o2", "o3"])
    assert cleaned["duplicate_conflict"].to_dict() == {arrival[0]: False, "o1": True, "o2": True, "o3": False}
    quarantine = result.quarantine.set_index("submission_id")
    assert sorted(quarantine.index) == sorted(arrival[1 + SMALL :])
    assert all(reasons == [_too_often()] for reasons in quarantine["reasons"])
    typed = raw.set_index("submission_id").loc[quarantine.index]
    pd.testing.assert_frame_equal(quarantine[typed.columns], typed, check_dtype=False)
    assert _placed(result.cleaned, result.quarantine) == sorted(raw["submission_id"])
    assert result.without_consent == 0


def test_at_the_real_bound_a_kept_record_lists_max_duplicates_ids() -> None:
    group, arrival = _group(rules.MAX_DUPLICATES + 5)
    result = pandas_engine.clean(group, KNOWN)
    assert list(result.cleaned["submission_id"]) == [arrival[0]]
    assert result.cleaned["duplicates"].iloc[0] == arrival[1 : 1 + rules.MAX_DUPLICATES]
    assert sorted(result.quarantine["submission_id"]) == sorted(arrival[1 + rules.MAX_DUPLICATES :])
    assert len(result.quarantine) == 4
    assert rules.MAX_DUPLICATES == 1000


def test_the_reason_is_in_the_data_contract_page() -> None:
    from pipeline_lib.cli import contract_doc

    assert "| `resubmitted_too_often` |" in contract_doc.render_markdown()


def _filled(client: DbApiClient, raw: pd.DataFrame) -> None:
    client.write("schools", SCHOOLS, mode="upsert", key="school_id")
    client.write("raw", raw, key="submission_id")


def _stored(client: DbApiClient) -> dict[str, dict[str, dict]]:
    return {
        name: {doc["_id"]: doc for doc in client.scan(name).to_pylist()} for name in ("cleaned", "quarantine")
    }


def test_the_pandas_job_places_every_resubmission_and_empties_raw(
    sqlite_client: DbApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline_lib.clean.job import run_clean

    _bound(monkeypatch)
    group, arrival = _group(10)
    raw = pd.concat([group, _others()], ignore_index=True)
    _filled(sqlite_client, raw)
    report = run_clean(None, sqlite_client, run_id="t", batch_size=4)

    assert sqlite_client.count("raw") == 0 and report.raw_deleted == len(raw)
    stored = _stored(sqlite_client)
    assert stored["cleaned"][arrival[0]]["duplicates"] == arrival[1 : 1 + SMALL]
    assert sorted(stored["quarantine"]) == sorted(arrival[1 + SMALL :])
    assert all(doc["reasons"] == [_too_often()] for doc in stored["quarantine"].values())
    by_id = raw.set_index("submission_id")
    assert all(doc["ses"] == by_id.loc[i, "ses"] for i, doc in stored["quarantine"].items())
    assert (report.cleaned, report.duplicates_collapsed, report.quarantined) == (4, SMALL, 10 - 1 - SMALL)
    assert report.reasons.to_dict("records") == [
        {"reason": "resubmitted_too_often", "records": 6, "example": _too_often()["message"]}
    ]


# -- the Spark engine places them as the pandas engine does ------------------------------------------


def _commit_input(surplus: list[bool]) -> pa.Table:
    """Marked records as `spark_engine.mark_duplicates` hands them to `CountedCommit`: kept ones
    and, flagged, the ones past the bound."""
    from pipeline_lib.clean.by_value import CHANGE

    n = len(surplus)
    return pa.table(
        {
            "submission_id": [f"r{i:03d}" for i in range(n)],
            "duplicates": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
            "duplicate_conflict": [False] * n,
            "changes": pa.array([[] for _ in range(n)], pa.list_(CHANGE)),
            rules.SURPLUS: surplus,
        }
    )


def _commit(client: DbApiClient, records: pa.Table, commit: bool = True) -> CleanedTally:
    """`CountedCommit` as a task runs it, in this process: 2 records a call, 3 a batch."""
    task = CountedCommit(Committer.of(client, batch_size=2), commit=commit)
    rows = list(task(iter(records.to_batches(max_chunksize=3))))
    return CleanedTally.from_json(rows[0].column(0)[0].as_py())


def test_flagged_records_are_quarantined_with_their_raw_values_and_gone_ones_skipped(
    sqlite_client: DbApiClient,
) -> None:
    """A flagged record whose raw record is gone (a task run again after its first attempt
    committed) was placed by that attempt: it is skipped, and not counted again."""
    surplus = [i % 2 == 1 for i in range(10)]
    raw = pd.DataFrame(
        {"submission_id": [f"r{i:03d}" for i in range(10)], "ses": [f"{i},5" for i in range(10)]}
    )
    _filled(sqlite_client, raw.drop(index=[1, 3]))

    dry = _commit(sqlite_client, _commit_input(surplus), commit=False)
    assert (dry.cleaned, dry.quarantined, dry.raw_deleted) == (5, 5, 0)
    assert sqlite_client.count("cleaned") == sqlite_client.count("quarantine") == 0

    tally = _commit(sqlite_client, _commit_input(surplus))
    assert (tally.cleaned, tally.quarantined, tally.raw_deleted) == (5, 3, 8)
    assert tally.reasons_summary().to_dict("records") == [
        {"reason": "resubmitted_too_often", "records": 3, "example": _too_often()["message"]}
    ]
    assert sqlite_client.count("raw") == 0
    quarantine = {doc["_id"]: doc for doc in sqlite_client.scan("quarantine").to_pylist()}
    assert sorted(quarantine) == ["r005", "r007", "r009"]
    assert {i: (doc["ses"], doc["reasons"]) for i, doc in quarantine.items()} == {
        i: (f"{int(i[1:])},5", [_too_often()]) for i in quarantine
    }


def test_no_record_flagged_no_raw_scanned(
    sqlite_client: DbApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[str] = []
    original = DbApiClient.scan_batches

    def counted(self: DbApiClient, collection: str, **options: object) -> Iterator[pa.RecordBatch]:
        scans.append(collection)
        return original(self, collection, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(DbApiClient, "scan_batches", counted)
    _filled(sqlite_client, pd.DataFrame({"submission_id": [f"r{i:03d}" for i in range(5)], "v": "x"}))
    tally = _commit(sqlite_client, _commit_input([False] * 5))
    assert (tally.cleaned, tally.quarantined, tally.raw_deleted) == (5, 0, 5) and scans == []


@pytest.mark.slow
@pytest.mark.spark
def test_spark_clean_bounds_the_resubmissions_as_pandas_does(spark, monkeypatch: pytest.MonkeyPatch) -> None:
    """`spark_engine.clean` (an analyst's frame): the same cleaned records, and the surplus in its
    quarantine with the values as typed."""
    from pipeline_lib.clean import spark_engine

    _bound(monkeypatch)
    raw = pd.concat([_group(10)[0], _others()], ignore_index=True)
    expected = pandas_engine.clean(raw, KNOWN)
    cleaned, quarantine, _ = spark_engine.clean(
        spark.createDataFrame(raw.astype(object).where(raw.notna(), None)),
        spark.createDataFrame(pd.DataFrame({"school_id": sorted(KNOWN)})),
    )
    assert _comparable(cleaned.toPandas()) == _comparable(expected.cleaned)
    assert _comparable(quarantine.toPandas()) == _comparable(expected.quarantine)
    assert len(expected.quarantine) == 10 - 1 - SMALL


@pytest.mark.slow
@pytest.mark.spark
def test_the_spark_job_stores_and_reports_what_the_pandas_job_does(
    spark, sqlite_client: DbApiClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from db_api.server import start_server
    from db_api.store.sqlite import SqliteStore
    from pipeline_lib.clean.job import run_clean
    from tests.conftest import TOKEN

    _bound(monkeypatch)
    group, arrival = _group(25)
    raw = pd.concat([dirty_raw(300, seed=5), group, _others()], ignore_index=True)
    _filled(sqlite_client, raw)
    by_spark = run_clean(spark, sqlite_client, run_id="spark", batch_size=4)
    other = start_server(SqliteStore(tmp_path / "other.sqlite3"), "127.0.0.1:0", token=TOKEN)
    try:
        with DbApiClient(f"127.0.0.1:{other.port}", TOKEN) as pandas_client:
            _filled(pandas_client, raw)
            by_pandas = run_clean(None, pandas_client, run_id="pandas", batch_size=4)
            assert pandas_client.count("raw") == 0
            stored = _stored(pandas_client)
    finally:
        other.stop(grace=1)
    assert sqlite_client.count("raw") == 0
    assert by_spark.counts() == by_pandas.counts() and by_spark.raw_deleted == len(raw)
    pd.testing.assert_frame_equal(by_spark.reasons, by_pandas.reasons)
    pd.testing.assert_frame_equal(by_spark.changes, by_pandas.changes)
    expected = _stored(sqlite_client)
    assert expected["cleaned"][arrival[0]]["duplicates"] == arrival[1 : 1 + SMALL]
    assert set(arrival[1 + SMALL :]) <= set(expected["quarantine"])
    for name in ("cleaned", "quarantine"):
        assert stored[name].keys() == expected[name].keys()
        for doc_id, doc in expected[name].items():
            assert stored[name][doc_id] == doc, (name, doc_id)
