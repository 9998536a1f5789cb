"""The data-quality documents: reject reasons and the cleaner's changes counted from the
`quarantine` and `cleaned` collections through a real db-api, checked against plain counting."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import pyarrow as pa
import pytest

from pipeline_lib.clean import pandas_engine
from pipeline_lib.clean.rules import CleanResult
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.collections import CLEANED, QUARANTINE, SCHOOLS
from pipeline_lib.demo.rows import demo_rows
from pipeline_lib.process import quality_documents as q
from pipeline_lib.process import run as process_run
from pipeline_lib.process.results import RunStamp, suppress
from pipeline_lib.process.run import ProcessRun, publish_default
from pipeline_lib.wire.errors import Unavailable

STAMP = {"run_id": "process-t", "computed_at": dt.datetime(2026, 5, 4, tzinfo=dt.UTC)}
RUN = RunStamp(**STAMP)


def _reasons(*records: list[str]) -> pa.Table:
    rows = [
        [{"code": c, "field": c.split("_")[0], "message": f"{c} 'x'"} for c in codes] for codes in records
    ]
    return pa.table({"reasons": rows})


def test_reasons_are_counted_per_record_most_frequent_first() -> None:
    summary = q.reasons_summary(
        _reasons(["ses_out_of_range", "sex_missing"], ["sex_missing"], [], ["age_invalid"])
    )
    assert summary.to_dict("records") == [
        {"reason": "sex_missing", "records": 2},
        {"reason": "age_invalid", "records": 1},
        {"reason": "ses_out_of_range", "records": 1},
    ]


def test_changes_are_counted_per_field_and_rule() -> None:
    change = lambda field, *rules: {"field": field, "before": "a", "after": "b", "rules": list(rules)}  # noqa: E731
    cleaned = pa.table(
        {"changes": [[change("ses", "decimal_comma", "trimmed")], [change("ses", "trimmed")], []]}
    )
    assert q.changes_summary(cleaned).to_dict("records") == [
        {"field": "ses", "rule": "trimmed", "records": 2},
        {"field": "ses", "rule": "decimal_comma", "records": 1},
    ]


def test_a_reason_in_words_leaves_out_the_value_it_quotes() -> None:
    assert q.reason_text("ses_out_of_range") == "ses is outside -5..5"
    assert q.reason_text("school_unknown") == "school_id is not a known school"


def test_a_reason_of_fewer_than_k_records_is_hidden_but_named() -> None:
    summary = q.reasons_summary(_reasons(*[["sex_missing"]] * 6, ["age_invalid"]))
    public = suppress(q.reasons_document(summary, RUN, quarantined=7), k=5)
    assert public.tables[0].rows == [
        ["sex_missing", "sex is required but missing", 6],
        ["age_invalid", "age is not a number", None],
    ]


def test_summaries_of_batches_merge_into_the_summary_of_all() -> None:
    change = lambda field, *rules: {"field": field, "before": field, "after": "b", "rules": list(rules)}  # noqa: E731
    first = pa.table({"changes": [[change("ses", "decimal_comma", "trimmed")], [change("age", "trimmed")]]})
    second = pa.table({"changes": [[change("ses", "trimmed")], [], [change("ses", "decimal_comma")]]})
    both = pa.concat_tables([first, second])
    for examples in (False, True):
        parts = [q.changes_summary(t, examples=examples) for t in (first, second)]
        assert q.merge_counts(parts).equals(q.changes_summary(both, examples=examples))
    reasons = [_reasons(["sex_missing"], ["age_invalid", "sex_missing"]), _reasons([], ["age_invalid"])]
    merged = q.merge_counts([q.reasons_summary(t) for t in reasons])
    assert merged.equals(q.reasons_summary(pa.concat_tables(reasons)))
    # A document written by someone else may lack a field's name: counted apart, as in one pass.
    unnamed = {"field": None, "before": "x", "after": "b", "rules": ["trimmed"]}
    nameless = [pa.table({"changes": [[unnamed], [change("ses", "trimmed")]]}), second]
    merged = q.merge_counts([q.changes_summary(t) for t in nameless])
    assert merged.equals(q.changes_summary(pa.concat_tables(nameless)))
    assert merged["field"].isna().sum() == 1


@pytest.mark.parametrize("batch", [q.SCAN_BATCH, 97])
def test_the_documents_count_what_the_collections_hold(
    sqlite_client: DbApiClient, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "SCAN_BATCH", batch)  # 97: counted over many batches
    population, raw = demo_rows(1_500, 12, 0.3, seed=5)
    result = pandas_engine.clean(raw, set(population.schools["school_id"]))
    sqlite_client.write("cleaned", result.cleaned, mode="upsert", key="submission_id")
    sqlite_client.write("quarantine", result.quarantine, mode="upsert", key="submission_id")
    reasons, changes = q.quality_documents(sqlite_client, **STAMP)
    assert reasons.n_input == len(result.quarantine) and changes.n_input == len(result.cleaned)
    expected = Counter(r["code"] for record in result.quarantine["reasons"] for r in record)
    assert {row[0]: row[2] for row in reasons.tables[0].rows} == dict(expected)
    expected_changes = Counter(
        (c["field"], rule) for record in result.cleaned["changes"] for c in record for rule in c["rules"]
    )
    shown = {(r[0], r[1]): r[2] for r in changes.tables[0].rows}
    assert len(shown) == min(q.CHANGES_SHOWN, len(expected_changes))
    assert all(expected_changes[pair] == n for pair, n in shown.items())
    assert all(n <= min(shown.values()) for pair, n in expected_changes.items() if pair not in shown)
    # No example messages: they quote what students typed.
    assert reasons.tables[0].columns == ["reason", "text", "records"]
    assert all(row[1] == q.reason_text(row[0]) for row in reasons.tables[0].rows)


def test_empty_collections_give_empty_documents(sqlite_client: DbApiClient) -> None:
    reasons, changes = q.quality_documents(sqlite_client, **STAMP)
    assert (reasons.n_input, changes.n_input) == (0, 0)
    assert reasons.tables[0].rows == [] and changes.tables[0].rows == []


def test_a_run_counts_the_collections_as_it_read_them(sqlite_client: DbApiClient) -> None:
    """Counted beside the analyses, from just after the run's read: records quarantined once the
    counts are taken, while the run fits its models, are the next run's."""
    result = _stored_clean(sqlite_client)
    run = ProcessRun.start(None, sqlite_client, run_id="process-q", k_min_group=5, seed=1)
    later = result.quarantine.assign(submission_id=result.quarantine["submission_id"] + "-later")
    deadline = time.monotonic() + 60
    while not _read(run):  # the quality scans have ended (no wall-clock figure is asserted)
        assert time.monotonic() < deadline, "the quality documents were never read"
        time.sleep(0.05)
    sqlite_client.write(QUARANTINE, later, mode="upsert", key="submission_id")
    publish_default(run)
    report = run.finish(write=False)
    documents = {d.key: d for d in report.dashboard_documents}
    assert documents[keys.REJECT_REASONS].n_input == len(result.quarantine)
    assert documents[keys.TOP_CHANGES].n_input == len(result.cleaned)
    assert "data quality" in report.seconds


def _read(run: ProcessRun) -> bool:
    """Whether the counts the run takes beside its analyses are taken (nothing to wait for if it
    takes none beside them)."""
    quality = getattr(run, "_quality", None)
    return quality is None or quality.done()


def test_counts_that_failed_beside_the_analyses_are_taken_again_at_finish(
    sqlite_client: DbApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _stored_clean(sqlite_client)
    calls = []

    def first_fails(client: DbApiClient, **stamp: object) -> list:
        calls.append(stamp)
        if len(calls) == 1:
            raise Unavailable("the db-api is restarting")
        return q.quality_documents(client, **stamp)  # type: ignore[arg-type]

    monkeypatch.setattr(process_run, "quality_documents", first_fails)
    run = ProcessRun.start(None, sqlite_client, run_id="process-q", k_min_group=5, seed=1)
    publish_default(run)
    report = run.finish(write=False)
    assert len(calls) == 2
    documents = {d.key: d for d in report.dashboard_documents}
    assert documents[keys.REJECT_REASONS].n_input == len(result.quarantine)


def _stored_clean(client: DbApiClient) -> CleanResult:
    """Demo records cleaned, stored as a clean run stores them, with their schools."""
    population, raw = demo_rows(1_500, 12, 0.3, seed=5)
    result = pandas_engine.clean(raw, set(population.schools["school_id"]))
    client.write(SCHOOLS, population.schools, mode="upsert", key="school_id")
    client.write(CLEANED, result.cleaned, mode="upsert", key="submission_id")
    client.write(QUARANTINE, result.quarantine, mode="upsert", key="submission_id")
    return result
