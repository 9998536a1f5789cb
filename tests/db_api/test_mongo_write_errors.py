"""Which BulkWriteErrors the MongoDB store may treat as "already there": pure logic over the
`details` pymongo gives (a server that returns write concern errors is not available here)."""

from __future__ import annotations

from db_api.store.mongo import only_duplicate_ids

DUPLICATE = {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key error"}
OTHER = {"index": 1, "code": 121, "errmsg": "Document failed validation"}
CONCERN = {"code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out"}


def test_ids_already_stored_are_the_only_acceptable_error() -> None:
    both_there = [DUPLICATE, {**DUPLICATE, "index": 3}]
    assert only_duplicate_ids({"writeErrors": both_there, "writeConcernErrors": []})
    assert not only_duplicate_ids({"writeErrors": [DUPLICATE, OTHER], "writeConcernErrors": []})


def test_a_write_concern_error_is_never_acknowledged() -> None:
    # Inserts not replicated as the URI asks may be rolled back: the call must fail, not answer 201.
    assert not only_duplicate_ids({"writeErrors": [], "writeConcernErrors": [CONCERN]})
    assert not only_duplicate_ids({"writeErrors": [DUPLICATE], "writeConcernErrors": [CONCERN]})
    assert not only_duplicate_ids({})
