"""Run records read back from the documents of `runs`."""

from __future__ import annotations

import datetime as dt

from pipeline_lib.runs import records
from pipeline_lib.runs.records import RunRecord

STARTED = dt.datetime(2026, 11, 29, 10, 15, tzinfo=dt.UTC)


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, notebook="clean", started_at=STARTED, code_version="git:x", host="h")


def _document(run_id: str) -> dict[str, object]:
    """What `records.save` stores: the record's fields, with the run id as `_id`."""
    return {"_id": run_id, **_record(run_id).model_dump(mode="python")}


def test_a_stored_document_loads_as_the_record_it_was() -> None:
    assert records.load(_document("clean-1")) == _record("clean-1")


def test_a_stored_date_without_a_zone_reads_as_utc() -> None:
    document = {**_document("clean-1"), "started_at": STARTED.replace(tzinfo=None)}
    assert records.load(document).started_at == STARTED


def test_documents_that_do_not_read_as_run_records_are_left_out_in_order() -> None:
    damaged = {"_id": "x", "run_id": "x", "notebook": "clean"}  # no start, version or host
    found = records.load_readable([_document("clean-2"), damaged, _document("clean-1")])
    assert [r.run_id for r in found] == ["clean-2", "clean-1"]
