"""The gRPC service end to end: real server on loopback, real client, real store on disk."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from db_api.server import RunningServer
from pipeline_lib.client.sync import DbApiCallError, DbApiClient
from tests.conftest import TOKEN


def test_a_document_round_trips_with_its_types(client: DbApiClient) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    doc = {"_id": "s1", "ses": 0.5, "n": 3, "ok": True, "when": when, "tags": ["a"], "m": {"k": None}}
    result = client.insert_one("cleaned", doc)
    assert (result.id, result.inserted, result.document) == ("s1", True, doc)
    assert client.get("cleaned", "s1") == doc
    assert client.get("cleaned", "nope") is None


def test_insert_one_without_an_id_gets_one_and_repeats_are_harmless(client: DbApiClient) -> None:
    first = client.insert_one("raw", {"sex": "girl"})
    assert first.inserted and first.id == first.document["_id"]
    again = client.insert_one("raw", {"_id": first.id, "sex": "boy"})
    assert not again.inserted and again.document == first.document
    assert client.count("raw") == 1


def test_a_written_dataframe_scans_back_equal(client: DbApiClient) -> None:
    n = 25_000
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "submission_id": [f"sub{i:06d}" for i in range(n)],
            "school_id": rng.choice(["S1", "S2", "S3"], n),
            "ses": rng.normal(size=n),
            "math_score": rng.uniform(-10, 100, n),
            "age": pd.array(rng.integers(5, 30, n), dtype="Int64"),
            "minority": rng.random(n) < 0.3,
        }
    )
    frame.loc[3, "age"] = pd.NA
    result = client.write("cleaned", frame, mode="upsert", key="submission_id", batch_size=4000)
    assert (result.messages, result.inserted, result.replaced) == (7, n, 0)
    back = client.scan_pandas("cleaned", batch_size=3000)
    assert list(back["_id"]) == list(frame["submission_id"])
    pd.testing.assert_frame_equal(back.drop(columns="_id"), frame, check_dtype=False, check_exact=True)


def test_raw_scans_as_text_so_cleaning_sees_what_was_typed(client: DbApiClient) -> None:
    client.insert_one("raw", {"_id": "r1", "ses": "1,5", "age": 12, "ok": True, "m": {"a": [1, 2]}})
    client.insert_one("raw", {"_id": "r2", "ses": " 2.0 ", "extra": 1.0})
    table = client.scan("raw")
    assert all(pa.types.is_string(field.type) for field in table.schema)
    assert table.to_pylist() == [
        {"_id": "r1", "ses": "1,5", "age": "12", "ok": "true", "m": '{"a":[1,2]}', "extra": None},
        {"_id": "r2", "ses": " 2.0 ", "age": None, "ok": None, "m": None, "extra": "1.0"},
    ]
    typed = client.scan("raw", column_types="as_stored")
    assert typed.schema.field("age").type == pa.int64()


def test_a_column_holding_mixed_kinds_arrives_as_text_without_losing_values(client: DbApiClient) -> None:
    client.insert_one("processed", {"_id": "a", "v": 1})
    client.insert_one("processed", {"_id": "b", "v": "one"})
    assert client.scan("processed").column("v").to_pylist() == ["1", "one"]


def test_scan_projection_filter_limit_and_requested_schema(client: DbApiClient) -> None:
    frame = pd.DataFrame({"_id": [f"k{i}" for i in range(10)], "n": range(10), "s": list("abcdefghij")})
    client.write("cleaned", frame)
    table = client.scan("cleaned", columns=["n"], filter=[("n", "gte", 5)], limit=3)
    assert table.to_pylist() == [{"_id": "k5", "n": 5}, {"_id": "k6", "n": 6}, {"_id": "k7", "n": 7}]
    schema = pa.schema([("_id", pa.string()), ("n", pa.float64()), ("missing", pa.string())])
    cast = client.scan("cleaned", schema=schema, filter={"s": "a"})
    assert cast.schema == schema and cast.to_pylist() == [{"_id": "k0", "n": 0.0, "missing": None}]
    with pytest.raises(DbApiCallError) as error:
        client.scan("cleaned", schema=pa.schema([("_id", pa.string()), ("s", pa.int64())]))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'s'" in error.value.details


def test_two_partitioned_readers_cover_the_collection_once(client: DbApiClient) -> None:
    client.write("cleaned", pd.DataFrame({"_id": [f"p{i}" for i in range(5000)]}))
    parts = [client.scan("cleaned", partition=i, partitions=2).column("_id").to_pylist() for i in (0, 1)]
    assert len(set(parts[0]) | set(parts[1])) == len(parts[0]) + len(parts[1]) == 5000


def test_commit_clean_over_grpc(client: DbApiClient) -> None:
    client.write("raw", pd.DataFrame({"_id": ["a", "b", "c"], "ses": ["1", "x", "2"]}))
    cleaned = pd.DataFrame({"submission_id": ["a", "c"], "ses": [1.0, 2.0]})
    quarantine = pa.table(
        {
            "submission_id": ["b"],
            "reasons": [[{"code": "ses_not_a_number", "message": "ses 'x' is not a number"}]],
        }
    )
    result = client.commit_clean(cleaned, quarantine, ["a", "b", "c"])
    assert (result.cleaned, result.quarantined, result.raw_deleted) == (2, 1, 3)
    assert client.count("raw") == 0
    assert client.get("quarantine", "b")["reasons"][0]["code"] == "ses_not_a_number"
    assert client.commit_clean(cleaned, quarantine, ["a", "b", "c"]).raw_deleted == 0


def test_json_documents_put_get_and_list_newest_first(client: DbApiClient) -> None:
    assert client.put_document("runs", "run-1", {"status": "succeeded", "counts": {"in": 3}})
    assert not client.put_document("runs", "run-1", {"status": "failed"})
    client.put_document("runs", "run-2", {"status": "running"})
    assert client.get_document("runs", "run-1") == {"_id": "run-1", "status": "failed"}
    assert client.get_document("runs", "nope") is None
    listed = client.list_documents("runs", newest_first=True, limit=5)
    assert [d["_id"] for d in listed] == ["run-2", "run-1"]
    assert client.list_documents("runs", {"status": "running"}) == [{"_id": "run-2", "status": "running"}]


def test_leases_over_grpc(client: DbApiClient) -> None:
    assert client.acquire_lease("clean", "host-a", 30).acquired
    refused = client.acquire_lease("clean", "host-b", 30)
    assert not refused.acquired and refused.holder == "host-a"
    assert client.release_lease("clean", "host-a")
    with pytest.raises(DbApiCallError, match="ttl_seconds"):
        client.acquire_lease("clean", "host-b", 0)


def test_delete_ids_and_count_with_high_water_mark(client: DbApiClient) -> None:
    client.write("raw", pd.DataFrame({"_id": ["a", "b", "c"]}))
    assert client.delete_ids("raw", ["a", "c", "zz"]) == 2
    assert client.count("raw") == 1
    assert client.high_water_mark("raw") == 3


def test_a_health_check_needs_no_token_and_reflection_one(running_db_api: RunningServer) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with DbApiClient(f"127.0.0.1:{running_db_api.port}") as anonymous:
        assert anonymous.health() == "SERVING"
        assert anonymous.health("workbench.dbapi.v1.DbApi") == "SERVING"
        with pytest.raises(DbApiCallError) as error:
            anonymous.count("raw")
        assert error.value.code == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(f"127.0.0.1:{running_db_api.port}") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            ProtoReflectionDescriptorDatabase(channel).get_services()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    intercepted = grpc.intercept_channel(
        grpc.insecure_channel(f"127.0.0.1:{running_db_api.port}"), _Bearer(TOKEN)
    )
    with intercepted as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "workbench.dbapi.v1.DbApi" in services and "grpc.health.v1.Health" in services


class _Bearer(grpc.StreamStreamClientInterceptor):
    """Sends the db-api token with each streaming call (as grpcurl's -H does)."""

    def __init__(self, token: str) -> None:
        self.metadata = [("authorization", f"Bearer {token}")]

    def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(details._replace(metadata=[*(details.metadata or ()), *self.metadata]), requests)


def test_streams_without_a_token_take_no_slot(running_db_api: RunningServer, client: DbApiClient) -> None:
    """Health watches were open to anyone and counted among the 16 stream slots: 16 of them, never
    ended, left every scan and bulk write refused (RESOURCE_EXHAUSTED) until they were closed."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{running_db_api.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch
        watches = [watch(health_pb2.HealthCheckRequest()) for _ in range(20)]
        try:
            for call in watches:
                with pytest.raises(grpc.RpcError) as refused:
                    next(call)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            client.write("raw", pd.DataFrame({"_id": ["w1"]}))
            assert client.scan("raw").num_rows >= 1
        finally:
            for call in watches:
                call.cancel()


def test_a_wrong_token_is_refused(running_db_api: RunningServer) -> None:
    with (
        DbApiClient(f"127.0.0.1:{running_db_api.port}", "wrong") as intruder,
        pytest.raises(DbApiCallError) as error,
    ):
        intruder.write("raw", pd.DataFrame({"_id": ["x"]}))
    assert error.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "token" in error.value.details


def test_projection_with_a_filter_on_another_field(client: DbApiClient) -> None:
    client.write("cleaned", pa.table({"_id": ["a", "b", "c"], "x": [1, 2, 3], "y": ["p", "q", "r"]}))
    table = client.scan("cleaned", columns=["y"], filter=[("x", "gte", 2)])
    assert table.to_pylist() == [{"_id": "b", "y": "q"}, {"_id": "c", "y": "r"}]


def test_dates_are_stored_as_bson_dates(client: DbApiClient) -> None:
    client.write("processed", pa.table({"_id": ["a"], "day": pa.array([dt.date(2026, 3, 4)])}))
    assert client.get("processed", "a")["day"] == dt.datetime(2026, 3, 4, tzinfo=dt.UTC)


def test_decimals_are_stored_as_decimal128(client: DbApiClient, backend: str) -> None:
    if backend == "ferretdb":
        pytest.skip("FerretDB 1.24 has no Decimal128: it drops the connection on one")
    amounts = pa.array([decimal.Decimal("12.50")], pa.decimal128(6, 2))
    client.write("processed", pa.table({"_id": ["a"], "amount": amounts}))
    assert str(client.get("processed", "a")["amount"]) == "12.50"
    assert client.scan("processed").column("amount").to_pylist() == [decimal.Decimal("12.50")]


def test_a_batch_with_one_unstorable_record_stores_none_of_it(client: DbApiClient) -> None:
    values = pa.array([1, 2, 2**64 - 1], pa.uint64())  # the last one does not fit BSON's int64
    with pytest.raises(DbApiCallError) as error:
        client.write("cleaned", pa.table({"_id": ["a", "b", "c"], "v": values}))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.count("cleaned") == 0


def test_a_record_judged_again_moves_between_cleaned_and_quarantine(client: DbApiClient) -> None:
    record = pa.table({"submission_id": ["s1"], "ses": [1.0]})
    client.commit_clean(None, record, [])
    client.commit_clean(record, None, [])
    assert client.get("cleaned", "s1") is not None and client.get("quarantine", "s1") is None
    client.commit_clean(None, record, [])
    assert client.get("cleaned", "s1") is None and client.get("quarantine", "s1") is not None


def test_a_column_whose_kind_differs_between_pages_arrives_as_text(client: DbApiClient) -> None:
    client.write("processed", pa.table({"_id": [f"n{i}" for i in range(5)], "z": range(5)}))
    client.write("processed", pa.table({"_id": [f"t{i}" for i in range(5)], "z": list("abcde")}))
    table = client.scan("processed", batch_size=5)
    assert table.column("z").to_pylist() == ["0", "1", "2", "3", "4", "a", "b", "c", "d", "e"]


def test_wide_records_are_split_to_fit_messages_both_ways(running_db_api: RunningServer) -> None:
    wide = pa.table({"_id": [f"w{i}" for i in range(400)], "text": ["x" * 50_000] * 400})  # 20 MB
    with DbApiClient(f"127.0.0.1:{running_db_api.port}", TOKEN, max_message_bytes=4 * 1024 * 1024) as small:
        assert small.write("raw", wide).inserted == 400
        assert small.scan("raw", batch_size=400).num_rows == 400


def test_errors_raised_while_preparing_a_write_reach_the_caller_unchanged(client: DbApiClient) -> None:
    def broken() -> Iterator[pa.Table]:
        yield pa.table({"_id": ["ok"]})
        raise ValueError("the upload was cut short")

    with pytest.raises(ValueError, match="cut short"):
        client.write("raw", broken())
    with pytest.raises(ValueError, match="mode must be"):
        client.write("raw", pa.table({"_id": ["x"]}), mode="merge")
