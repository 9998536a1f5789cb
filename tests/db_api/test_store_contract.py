"""The contract every store backend keeps: the same tests on SQLite and each MongoDB server."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from db_api import request_documents
from db_api.filters import Condition, Op
from db_api.store.base import ScanSpec, Store
from db_api.store.encoded import EncodedDocuments
from pipeline_lib.wire.arrow_codec import table_to_ipc
from pipeline_lib.wire.bson_codec import MAX_DOCUMENT_BYTES
from pipeline_lib.wire.errors import DeadlineExceeded, InvalidArgument


def _docs(n: int, start: int = 0) -> list[dict]:
    return [{"_id": f"id{i:05d}", "n": i, "school": f"S{i % 3}"} for i in range(start, start + n)]


def _ids(store: Store, collection: str, spec: ScanSpec | None = None) -> list[str]:
    return [doc["_id"] for page in store.scan(collection, spec or ScanSpec()) for doc in page]


def test_insert_one_inserts_then_returns_the_stored_document_unchanged(store: Store) -> None:
    first, inserted = store.insert_one("raw", {"_id": "a", "sex": "F"})
    again, inserted_again = store.insert_one("raw", {"_id": "a", "sex": "M"})
    assert (first, inserted) == ({"_id": "a", "sex": "F"}, True)
    assert (again, inserted_again) == ({"_id": "a", "sex": "F"}, False)
    assert store.get("raw", "a") == {"_id": "a", "sex": "F"}


def test_get_of_a_missing_id_is_none(store: Store) -> None:
    assert store.get("raw", "missing") is None


def test_documents_keep_their_bson_types(store: Store) -> None:
    when = dt.datetime(2026, 11, 29, 6, 30, 15, 123000, tzinfo=dt.UTC)
    doc = {
        "_id": "typed",
        "int": 7,
        "big": 2**40,
        "float": -0.5,
        "bool": False,
        "none": None,
        "text": "Zoë 🙂",
        "list": [1, "two", None],
        "nested": {"a": {"b": [1.5]}},
        "when": when,
        "bytes": b"\x00\x01",
    }
    store.insert_one("cleaned", doc)
    assert store.get("cleaned", "typed") == doc


def test_insert_mode_skips_existing_ids_and_upsert_replaces_whole_documents(store: Store) -> None:
    assert store.write("cleaned", _docs(3), upsert=False).inserted == 3
    counts = store.write("cleaned", [{"_id": "id00000", "n": 99}, *_docs(1, 3)], upsert=False)
    assert (counts.inserted, counts.skipped) == (1, 1)
    assert store.get("cleaned", "id00000")["n"] == 0
    counts = store.write("cleaned", [{"_id": "id00000", "n": 99}, *_docs(1, 4)], upsert=True)
    assert (counts.inserted, counts.replaced) == (1, 1)
    assert store.get("cleaned", "id00000") == {"_id": "id00000", "n": 99}


def test_repeating_an_upsert_changes_nothing(store: Store) -> None:
    store.write("cleaned", _docs(10), upsert=True)
    before = _ids(store, "cleaned")
    store.write("cleaned", _docs(10), upsert=True)
    assert _ids(store, "cleaned") == before
    assert store.count("cleaned") == 10


def test_scan_returns_insertion_order_in_pages_and_newest_first_on_request(store: Store) -> None:
    store.write("raw", _docs(25), upsert=False)
    pages = list(store.scan("raw", ScanSpec(page_size=10)))
    assert [len(p) for p in pages] == [10, 10, 5]
    ids = [d["_id"] for p in pages for d in p]
    assert ids == [f"id{i:05d}" for i in range(25)]
    assert _ids(store, "raw", ScanSpec(newest_first=True, limit=3)) == ["id00024", "id00023", "id00022"]
    assert len(_ids(store, "raw", ScanSpec(limit=7, page_size=5))) == 7


@pytest.mark.parametrize("partitions", [2, 3, 5])
def test_partitions_cover_a_collection_exactly_once(store: Store, partitions: int) -> None:
    store.write("cleaned", _docs(101), upsert=True)
    store.write("cleaned", _docs(20, 40), upsert=True)  # replacing keeps each id in its partition
    parts = [
        _ids(store, "cleaned", ScanSpec(partition=i, partitions=partitions, page_size=7))
        for i in range(partitions)
    ]
    every = [doc_id for part in parts for doc_id in part]
    assert len(every) == len(set(every)) == 101
    assert all(parts)


FILTER_CASES = [
    ([Condition("n", Op.EQ, 4)], ["id00004"]),
    ([Condition("n", Op.GTE, 7)], ["id00007", "id00008"]),
    ([Condition("n", Op.LT, 2)], ["id00000", "id00001"]),
    ([Condition("n", Op.GT, 3), Condition("n", Op.LTE, 5)], ["id00004", "id00005"]),
    ([Condition("school", Op.IN, ["S1"]), Condition("n", Op.NE, 1)], ["id00004", "id00007"]),
    ([Condition("n", Op.GT, "3")], []),  # text never compares with numbers
    ([Condition("_id", Op.PREFIX, "id0000")], [f"id0000{i}" for i in range(9)]),
    ([Condition("extra", Op.EXISTS, True)], ["id00002"]),
    ([Condition("extra", Op.EQ, None)], [f"id0000{i}" for i in range(9) if i != 2]),
]


@pytest.mark.parametrize(("conditions", "expected"), FILTER_CASES)
def test_filters_select_the_same_documents_on_every_backend(
    store: Store, conditions: list[Condition], expected: list[str]
) -> None:
    docs = _docs(9)
    docs[2]["extra"] = "x"
    store.write("cleaned", docs, upsert=False)
    assert _ids(store, "cleaned", ScanSpec(conditions=conditions)) == expected
    assert store.count("cleaned", conditions) == len(expected)


def test_delete_ids_deletes_exactly_those_ids(store: Store) -> None:
    store.write("raw", _docs(5), upsert=False)
    assert store.delete_ids("raw", ["id00001", "id00003", "nope"]) == 2
    assert _ids(store, "raw") == ["id00000", "id00002", "id00004"]


def test_high_water_mark_only_grows(store: Store) -> None:
    assert store.high_water_mark("cleaned") == 0
    store.write("cleaned", _docs(5), upsert=False)
    mark = store.high_water_mark("cleaned")
    assert mark >= 5
    store.delete_ids("cleaned", ["id00004"])
    assert store.high_water_mark("cleaned") == mark
    store.write("cleaned", _docs(1, 10), upsert=False)
    assert store.high_water_mark("cleaned") > mark


def test_commit_clean_moves_records_and_is_harmless_to_repeat(store: Store, backend: str) -> None:
    store.write("raw", _docs(4), upsert=False)
    cleaned = [{"_id": "id00000", "n": 0}, {"_id": "id00001", "n": 1}]
    quarantine = [{"_id": "id00002", "reasons": [{"code": "ses_out_of_range"}]}]
    raw_ids = ["id00000", "id00001", "id00002"]
    first = store.commit_clean(cleaned, quarantine, raw_ids)
    assert (first.cleaned, first.quarantined, first.raw_deleted) == (2, 1, 3)
    # FerretDB has no transactions: it exercises the upsert-then-delete order.
    assert first.transactional is (backend != "ferretdb")
    again = store.commit_clean(cleaned, quarantine, raw_ids)
    assert (again.cleaned, again.quarantined, again.raw_deleted) == (2, 1, 0)
    assert _ids(store, "raw") == ["id00003"]
    assert _ids(store, "cleaned") == ["id00000", "id00001"]
    assert store.get("quarantine", "id00002") == quarantine[0]


def test_records_committed_as_bson_encoded_from_arrow_are_stored_as_their_dicts_would_be(
    store: Store,
) -> None:
    """CommitClean brings Arrow batches that the db-api encodes column by column
    (`from_ipc`): each backend stores them, receipts of the resubmissions they name
    included, as it stores the same records given as dicts."""
    when = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    raw = [{"_id": i, "submission_id": i, "received_at": when, "v": "1"} for i in ("a", "b", "c", "d")]
    store.write("raw", raw, upsert=False)
    cleaned = pa.table(
        {
            "submission_id": ["a", "b"],
            "score": [1.5, None],
            "changes": [[{"field": "sex", "rules": ["trim"]}], []],
            "duplicates": [["c"], []],
        }
    )
    quarantine = pa.table({"submission_id": ["d"], "reasons": [[{"code": "x", "field": "v"}]]})
    encoded = [
        request_documents.from_ipc(table_to_ipc(t), "submission_id", "batch") for t in (cleaned, quarantine)
    ]
    assert all(isinstance(docs, EncodedDocuments) for docs in encoded)
    counts = store.commit_clean(encoded[0], encoded[1], ["a", "b", "c", "d"])
    assert (counts.cleaned, counts.quarantined, counts.raw_deleted) == (2, 1, 4)
    as_dicts = [
        request_documents.dicts_from_ipc(table_to_ipc(t), "submission_id", "batch")
        for t in (cleaned, quarantine)
    ]
    assert [store.get("cleaned", i) for i in ("a", "b")] == as_dicts[0]
    assert store.get("quarantine", "d") == as_dicts[1][0]
    assert store.get("receipts", "c") == {"_id": "c", "submission_id": "c", "received_at": when}
    assert _ids(store, "raw") == []


def test_a_record_both_cleaned_and_quarantined_is_refused_and_nothing_changes(store: Store) -> None:
    store.write("raw", _docs(2), upsert=False)
    record = [{"_id": "id00000", "n": 0}]
    with pytest.raises(InvalidArgument, match="both cleaned and quarantined: \\['id00000'\\]"):
        store.commit_clean(record, record, ["id00000", "id00001"])
    assert _ids(store, "raw") == ["id00000", "id00001"]
    assert _ids(store, "cleaned") == _ids(store, "quarantine") == []


def test_a_lease_goes_to_one_holder_until_it_expires_or_is_released(store: Store) -> None:
    now = 1_000_000.0
    assert store.acquire_lease("clean", "a", 60, now).acquired
    refused = store.acquire_lease("clean", "b", 60, now + 1)
    assert (refused.acquired, refused.holder, refused.expires_at) == (False, "a", now + 60)
    assert store.acquire_lease("clean", "a", 60, now + 2).expires_at == now + 62  # renewal
    assert store.acquire_lease("clean", "b", 60, now + 63).acquired  # a's lease expired
    assert not store.release_lease("clean", "a")
    assert store.release_lease("clean", "b")
    assert store.acquire_lease("clean", "a", 60, now + 64).acquired
    assert store.acquire_lease("process", "b", 60, now + 64).acquired  # names are independent


def test_a_lease_generation_grows_with_each_new_holding_and_only_then(store: Store) -> None:
    now = 1_000_000.0
    first = store.acquire_lease("run:clean", "a", 60, now).generation
    assert first >= 1
    assert store.acquire_lease("run:clean", "a", 60, now + 10).generation == first  # renewal
    assert store.acquire_lease("run:clean", "b", 60, now + 20).generation == first  # refused: current
    assert store.acquire_lease("run:clean", "b", 60, now + 71).generation == first + 1  # after expiry
    assert store.acquire_lease("run:clean", "b", 60, now + 80).generation == first + 1
    assert store.release_lease("run:clean", "b")
    assert store.acquire_lease("run:clean", "b", 60, now + 81).generation == first + 2  # after release
    # The same holder, late: its lease expired but nobody took it, so no newer fence exists.
    assert store.acquire_lease("run:clean", "b", 60, now + 200).generation == first + 2
    # Another took it after that expiry, then the first came back: a new holding each time.
    assert store.acquire_lease("run:clean", "c", 60, now + 300).generation == first + 3
    assert store.acquire_lease("run:clean", "b", 60, now + 400).generation == first + 4
    assert store.acquire_lease("run:process", "a", 60, now).generation >= 1  # names are independent


# -- Filters on values where MongoDB's semantics differ from Python's ---------------------------

_MISSING = object()
_NAN = float("nan")
# FerretDB 1.24 cannot store these documents: Decimal128 and NaN make it drop the connection, and it
# refuses nested arrays. A NaN in a query drops the connection too.
_NOT_ON_FERRETDB = "FerretDB 1.24 cannot store Decimal128, NaN or nested arrays, nor query NaN"


def _semantics_docs(exotic: bool) -> list[dict]:
    """Documents named after their field `a`; `exotic` adds those FerretDB cannot store."""
    from bson.decimal128 import Decimal128  # local: only this section needs it

    values = {
        "arr": [1, 5, "xy", None],
        "pair": [1, 2],
        "empty": [],
        "num": 3,
        "str": "xyz",
        "doc": {"p": 1, "q": [2]},
        "null": None,
        "missing": _MISSING,
    }
    if exotic:
        values |= {
            "nested": [[1, 2], 3],
            "dec": Decimal128("2.5"),
            "nan": _NAN,
            "decnan": Decimal128("NaN"),
        }
    return [
        {"_id": name} if value is _MISSING else {"_id": name, "a": value} for name, value in values.items()
    ]


_ALL_PLAIN = ["arr", "pair", "empty", "num", "str", "doc", "null", "missing"]

# (exotic documents?, condition, ids MongoDB selects: checked against SecantusDB)
SEMANTICS_CASES = [
    # An array matches if the whole array or any element does; `ne` negates that.
    (False, Condition("a", Op.EQ, 5), ["arr"]),
    (False, Condition("a", Op.EQ, 1), ["arr", "pair"]),
    (False, Condition("a", Op.EQ, [1, 2]), ["pair"]),
    (False, Condition("a", Op.EQ, [2, 1]), []),
    (False, Condition("a", Op.NE, 1), ["empty", "num", "str", "doc", "null", "missing"]),
    (False, Condition("a", Op.GT, 4), ["arr"]),
    (False, Condition("a", Op.LT, 2), ["arr", "pair"]),
    (False, Condition("a", Op.GTE, 3), ["arr", "num"]),
    (False, Condition("a", Op.IN, [2, "xyz"]), ["pair", "str"]),
    (False, Condition("a", Op.IN, [[1, 2]]), ["pair"]),
    (False, Condition("a", Op.PREFIX, "x"), ["arr", "str"]),
    # Null equals null and a missing field, also for gte and lte; an array holding null matches.
    (False, Condition("a", Op.EQ, None), ["arr", "null", "missing"]),
    (False, Condition("a", Op.NE, None), ["pair", "empty", "num", "str", "doc"]),
    (False, Condition("a", Op.GTE, None), ["arr", "null", "missing"]),
    (False, Condition("a", Op.LTE, None), ["arr", "null", "missing"]),
    (False, Condition("a", Op.GT, None), []),
    (False, Condition("a", Op.LT, None), []),
    # Embedded documents are equal only with their keys in the same order.
    (False, Condition("a", Op.EQ, {"p": 1, "q": [2]}), ["doc"]),
    (False, Condition("a", Op.EQ, {"p": 1.0, "q": [2.0]}), ["doc"]),
    (False, Condition("a", Op.EQ, {"q": [2], "p": 1}), []),
    (False, Condition("a", Op.NE, {"q": [2], "p": 1}), _ALL_PLAIN),
    # Only one level of array is searched: [[1, 2], 3] holds [1, 2] but not 1.
    (True, Condition("a", Op.EQ, [1, 2]), ["pair", "nested"]),
    (True, Condition("a", Op.EQ, 1), ["arr", "pair"]),
    # Decimal128 compares with other numbers by value.
    (True, Condition("a", Op.EQ, 2.5), ["dec"]),
    (True, Condition("a", Op.GT, 2), ["arr", "num", "nested", "dec"]),
    (True, Condition("a", Op.LT, 3), ["arr", "pair", "dec"]),
    (True, Condition("a", Op.LTE, 2.5), ["arr", "pair", "dec"]),
    (True, Condition("a", Op.IN, [2.5, "xyz"]), ["str", "dec"]),
    # NaN (a double or a Decimal128) equals NaN, but is neither less nor greater than anything.
    (True, Condition("a", Op.EQ, _NAN), ["nan", "decnan"]),
    (True, Condition("a", Op.IN, [_NAN]), ["nan", "decnan"]),
    (True, Condition("a", Op.NE, _NAN), [*_ALL_PLAIN, "nested", "dec"]),
    (True, Condition("a", Op.GTE, _NAN), ["nan", "decnan"]),
    (True, Condition("a", Op.LTE, _NAN), ["nan", "decnan"]),
    (True, Condition("a", Op.GT, _NAN), []),
    (True, Condition("a", Op.LT, float("inf")), ["arr", "pair", "num", "nested", "dec"]),
    (True, Condition("a", Op.GT, float("-inf")), ["arr", "pair", "num", "nested", "dec"]),
]


@pytest.mark.parametrize(("exotic", "condition", "expected"), SEMANTICS_CASES)
def test_filters_follow_mongodb_semantics_on_every_backend(
    store: Store, backend: str, exotic: bool, condition: Condition, expected: list[str]
) -> None:
    if exotic and backend == "ferretdb":
        pytest.skip(_NOT_ON_FERRETDB)
    store.write("cleaned", _semantics_docs(exotic), upsert=False)
    assert _ids(store, "cleaned", ScanSpec(conditions=[condition])) == expected
    assert store.count("cleaned", [condition]) == len(expected)


def test_concurrent_inserts_of_the_same_ids_store_each_once_and_agree(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def insert(i: int) -> tuple[dict, bool]:
        return store.insert_one("raw", {"_id": f"c{i % 50}", "by": i})

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(insert, range(400)))
    assert sum(inserted for _, inserted in results) == 50
    assert store.count("raw") == 50
    for i, (doc, _) in enumerate(results):
        assert doc == store.get("raw", f"c{i % 50}")


def test_insert_each_inserts_in_order_and_refuses_only_the_documents_that_cannot_be_stored(
    store: Store,
) -> None:
    store.insert_one("raw", {"_id": "old", "by": "earlier"})
    too_large = {"_id": "big", "text": "x" * (MAX_DOCUMENT_BYTES + 1)}
    docs = [{"_id": "a", "by": 1}, too_large, {"_id": "old", "by": 2}, {"_id": "a", "by": 3}, {"_id": "b"}]
    outcomes = store.insert_each("raw", docs)
    assert outcomes[0] == ({"_id": "a", "by": 1}, True)
    assert isinstance(outcomes[1], InvalidArgument) and "big" in str(outcomes[1])
    # An existing id, or one earlier in the same call, is left as stored and returned as such.
    assert outcomes[2] == ({"_id": "old", "by": "earlier"}, False)
    assert outcomes[3] == ({"_id": "a", "by": 1}, False)
    assert outcomes[4] == ({"_id": "b"}, True)
    assert _ids(store, "raw") == ["old", "a", "b"]
    assert store.insert_each("raw", []) == []


def test_concurrent_insert_each_calls_of_overlapping_ids_store_each_once_and_agree(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def insert(call: int) -> list:
        return store.insert_each("raw", [{"_id": f"e{(call * 7 + i) % 60}", "by": call} for i in range(20)])

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for call in pool.map(insert, range(40)) for o in call]
    assert sum(inserted for _, inserted in outcomes) == 60
    assert store.count("raw") == 60
    for doc, _ in outcomes:
        assert doc == store.get("raw", doc["_id"])


def test_an_insert_is_bounded_by_its_callers_deadline(store: Store) -> None:
    """A deadline already past stores nothing (the caller has left); one with time to spare is
    met as any insert (on MongoDB it goes to the server as maxTimeMS)."""
    import time

    gone = time.monotonic() - 0.1
    with pytest.raises(DeadlineExceeded):
        store.insert_one("raw", {"_id": "late"}, gone)
    with pytest.raises(DeadlineExceeded):
        store.insert_each("raw", [{"_id": "late"}, {"_id": "later"}], gone)
    assert store.count("raw") == 0
    soon = time.monotonic() + 30
    assert store.insert_one("raw", {"_id": "a"}, soon) == ({"_id": "a"}, True)
    assert store.insert_each("raw", [{"_id": "a", "v": 2}, {"_id": "b"}], soon) == [
        ({"_id": "a"}, False),
        ({"_id": "b"}, True),
    ]
    assert _ids(store, "raw") == ["a", "b"]


def test_an_id_a_clean_moved_on_is_never_received_into_raw_again(store: Store) -> None:
    """A resent form page, a reused Idempotency-Key or an upload sent again after the clean finds
    the record where the clean put it: it is not stored again, and the cleaned record stays."""
    store.write("raw", [{"_id": "c", "v": "1"}, {"_id": "q", "v": "x"}], upsert=False)
    store.commit_clean([{"_id": "c", "v": 1}], [{"_id": "q", "v": "x", "reasons": []}], ["c", "q"])
    assert store.insert_one("raw", {"_id": "c", "v": "other"}) == ({"_id": "c", "v": 1}, False)
    outcomes = store.insert_each("raw", [{"_id": "q", "v": "y"}, {"_id": "n1"}, {"_id": "c"}])
    assert outcomes == [
        ({"_id": "q", "v": "x", "reasons": []}, False),
        ({"_id": "n1"}, True),
        ({"_id": "c", "v": 1}, False),
    ]
    counts = store.write("raw", [{"_id": "c"}, {"_id": "n2"}, {"_id": "q"}, {"_id": "n1"}], upsert=False)
    assert (counts.inserted, counts.skipped) == (1, 3)
    assert _ids(store, "raw") == ["n1", "n2"]
    assert store.get("cleaned", "c") == {"_id": "c", "v": 1}
    # Other collections keep plain insert-if-absent semantics.
    assert store.insert_one("processed", {"_id": "c"}) == ({"_id": "c"}, True)


def test_an_id_the_clean_merged_into_another_record_is_still_received_once(store: Store) -> None:
    """A resubmission merged into another record leaves raw without a record of its own: its
    receipt (metadata, no answers) is kept in `receipts`, and a resend finds it. Of a record
    without consent nothing is kept."""
    when = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    meta = {"received_at": when, "source": "form", "answers_sha256": "h"}
    raw = [{"_id": i, "submission_id": i, **meta, "v": "1"} for i in ("kept", "merged", "no-consent")]
    store.write("raw", raw, upsert=False)
    # Records without consent are deleted alone by the engines; beside a kept record too, nothing is kept.
    store.commit_clean([{"_id": "kept", "duplicates": ["merged"]}], [], ["kept", "merged", "no-consent"])
    receipt = {"_id": "merged", "submission_id": "merged", **meta}
    assert store.get("receipts", "merged") == receipt
    assert store.count("receipts") == 1
    assert store.insert_one("raw", {"_id": "merged", "v": "2"}) == (receipt, False)
    assert store.insert_each("raw", [{"_id": "merged", "v": "2"}]) == [(receipt, False)]
    counts = store.write("raw", [{"_id": "merged"}, {"_id": "no-consent"}, {"_id": "new"}], upsert=False)
    assert (counts.inserted, counts.skipped) == (2, 1)
    assert _ids(store, "raw") == ["no-consent", "new"]
    # Repeating the commit (a rerun after a crash) keeps the receipt as it was.
    store.commit_clean([{"_id": "kept", "duplicates": ["merged"]}], [], ["kept", "merged"])
    assert store.get("receipts", "merged") == receipt


def test_a_record_comes_first_from_its_first_later_home(store: Store) -> None:
    """Should an id have both a cleaned record and a receipt (a clean merged it, a later one kept
    it), an insert answers with the cleaned record on every backend."""
    store.write("receipts", [{"_id": "x", "source": "api"}], upsert=True)
    store.write("cleaned", [{"_id": "x", "v": 1}], upsert=True)
    assert store.insert_one("raw", {"_id": "x"}) == ({"_id": "x", "v": 1}, False)


@pytest.mark.parametrize("call", ["insert_one", "insert_each", "write"])
def test_an_insert_racing_the_clean_of_its_id_answers_with_the_cleaned_record(
    store: Store, backend: str, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MongoDB looks for a moved id, then inserts, in separate steps: a clean committing that id in
    between (deleting the raw copy it read) must not leave the resend in raw, where the next clean
    would replace the acknowledged record with it. (The embedded store does both in one
    transaction under its write lock, so nothing can come in between.)"""
    if backend == "sqlite":
        pytest.skip("one transaction: no clean can commit between the look and the insert")
    store.insert_one("raw", {"_id": "x", "v": "first"})
    look = store._moved  # type: ignore[attr-defined]
    cleaned = []

    def look_then_clean(*args: object, **kwargs: object) -> dict:
        found = look(*args, **kwargs)
        if not cleaned:  # the clean commits right after the first look
            cleaned.append(store.commit_clean([{"_id": "x", "v": 1}], [], ["x"]))
        return found

    monkeypatch.setattr(store, "_moved", look_then_clean)
    resent = {"_id": "x", "v": "second"}
    if call == "insert_one":
        assert store.insert_one("raw", resent) == ({"_id": "x", "v": 1}, False)
    elif call == "insert_each":
        assert store.insert_each("raw", [resent]) == [({"_id": "x", "v": 1}, False)]
    else:
        counts = store.write("raw", [resent], upsert=False)
        assert (counts.inserted, counts.skipped) == (0, 1)
    assert store.count("raw") == 0
    assert store.get("cleaned", "x") == {"_id": "x", "v": 1}
