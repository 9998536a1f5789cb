"""Bad input gets a clear gRPC error, the server stays up and no stored data changes."""

from __future__ import annotations

import decimal

import bson
import grpc
import pandas as pd
import pyarrow as pa
import pytest

from db_api.server import RunningServer
from db_api.servicer import MAX_INSERT_EACH, conditions_from_proto
from pipeline_lib.client.sync import DbApiCallError, DbApiClient
from pipeline_lib.wire.arrow_codec import table_to_ipc
from pipeline_lib.wire.errors import InvalidArgument
from pipeline_lib.wire.proto import dbapi_pb2 as pb
from pipeline_lib.wire.proto import dbapi_pb2_grpc
from tests.conftest import TOKEN

METADATA = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def stub(sqlite_db_api: RunningServer):
    with grpc.insecure_channel(f"127.0.0.1:{sqlite_db_api.port}") as channel:
        yield dbapi_pb2_grpc.DbApiStub(channel)


@pytest.fixture
def seeded(sqlite_client: DbApiClient) -> DbApiClient:
    sqlite_client.write("raw", pd.DataFrame({"_id": ["keep1", "keep2"], "ses": ["1", "2"]}))
    sqlite_client.write("cleaned", pd.DataFrame({"_id": ["c1"], "ses": [1.0]}))
    return sqlite_client


def _snapshot(client: DbApiClient) -> dict[str, list]:
    return {name: client.scan(name).to_pylist() for name in ("raw", "cleaned", "quarantine")}


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def test_malformed_arrow_is_invalid_argument_and_nothing_changes(stub, seeded: DbApiClient) -> None:
    before = _snapshot(seeded)
    good = table_to_ipc(pa.table({"_id": ["new1"]}))
    for payload in (b"not arrow at all", good[: len(good) // 2], good[:-9] + b"\xff" * 9):
        request = pb.WriteBatchesRequest(collection="raw", mode=pb.WRITE_MODE_INSERT, arrow_ipc=payload)
        code, message = _code(lambda request=request: stub.WriteBatches(iter([request]), metadata=METADATA))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Arrow IPC" in message
    commit = pb.CommitCleanRequest(cleaned_arrow_ipc=b"garbage", raw_ids=["keep1"])
    assert _code(lambda: stub.CommitClean(commit, metadata=METADATA))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _snapshot(seeded) == before


def test_malformed_bson_is_invalid_argument(stub, seeded: DbApiClient) -> None:
    request = pb.InsertOneRequest(collection="raw", document_bson=b"\x05\x00\x00\x00\x01")
    code, message = _code(lambda: stub.InsertOne(request, metadata=METADATA))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "BSON" in message


def test_unknown_collection_is_not_found_and_names_the_known_ones(seeded: DbApiClient) -> None:
    with pytest.raises(DbApiCallError) as error:
        seeded.scan("students")
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    assert "'students'" in error.value.details and "raw" in error.value.details


@pytest.mark.parametrize(
    "document",
    [
        {"$where": "1"},
        {"a.b": 1},
        {"nested": {"$gt": 1}},
        {"deep": [{"x": {"bad.key": 1}}]},
        {"_id": 42},
        {"_id": ""},
        {"_wb_seq": 1},
    ],
)
def test_documents_breaking_mongodb_rules_are_refused(seeded: DbApiClient, document: dict) -> None:
    before = _snapshot(seeded)
    with pytest.raises(DbApiCallError) as error:
        seeded.insert_one("raw", {"_id": "x", **document} if "_id" not in document else document)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert _snapshot(seeded) == before


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        (pa.table({"_id": ["a"], "$bad": [1]}), "'$bad'"),
        (pa.table({"_id": ["a"], "x.y": [1]}), "'x.y'"),
        (pa.table({"_id": ["a"], "s": pa.array([{"$k": 1}])}), "'s.$k'"),
        (pa.table({"_id": ["a"], "d": pa.array([1], pa.duration("s"))}), "duration"),
        (pa.table({"_id": [1]}), "_id must be a string"),
        (pa.table({"other": ["a"]}), "_id must be a string"),
    ],
)
def test_batches_breaking_the_rules_are_refused(seeded: DbApiClient, table: pa.Table, needle: str) -> None:
    before = _snapshot(seeded)
    with pytest.raises(DbApiCallError) as error:
        seeded.write("raw", table)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in error.value.details
    assert _snapshot(seeded) == before


def test_a_record_without_its_key_is_refused(seeded: DbApiClient) -> None:
    with pytest.raises(DbApiCallError, match="key field 'submission_id'"):
        seeded.write("cleaned", pa.table({"submission_id": ["a", None]}), mode="upsert", key="submission_id")


def test_a_failing_message_mid_stream_reports_what_was_committed(seeded: DbApiClient) -> None:
    parts = [pa.table({"_id": ["m1", "m2"]}), pa.table({"_id": ["m3"], "$x": [1]})]
    with pytest.raises(DbApiCallError, match="1 earlier messages were committed") as error:
        seeded.write("raw", iter(parts))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert seeded.get("raw", "m1") is not None and seeded.get("raw", "m3") is None


def test_an_oversized_message_is_resource_exhausted_and_the_server_stays_up(seeded: DbApiClient) -> None:
    before = _snapshot(seeded)
    huge = pa.table({"_id": [f"h{i}" for i in range(10)], "blob": ["x" * 1_000_000] * 10})
    with pytest.raises(DbApiCallError) as error:
        seeded.write("raw", huge, batch_size=10)
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(DbApiCallError) as error:
        seeded.insert_one("raw", {"_id": "big", "blob": "y" * 5_000_000})
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _snapshot(seeded) == before
    assert seeded.health() == "SERVING"


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"partition": 2, "partitions": 2}, "partition 2 does not exist"),
        ({"batch_size": 10_000_000}, "batch_size"),
        ({"columns": ["a.b"]}, "'a.b'"),
        ({"filter": [("ses", "in", 3)]}, "needs a list"),
    ],
)
def test_bad_scan_requests_are_invalid_argument(seeded: DbApiClient, options: dict, needle: str) -> None:
    with pytest.raises(DbApiCallError) as error:
        seeded.scan("raw", **options)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in error.value.details


def test_bad_filter_json_and_operator_are_invalid_argument(stub, seeded: DbApiClient) -> None:
    for condition in (
        pb.Condition(field="ses", op=pb.OPERATOR_EQ, value_json="{not json"),
        pb.Condition(field="ses", op=pb.OPERATOR_UNSPECIFIED, value_json="1"),
    ):
        request = pb.CountRequest(collection="raw", filter=[condition])
        assert _code(lambda request=request: stub.Count(request, metadata=METADATA))[0] == (
            grpc.StatusCode.INVALID_ARGUMENT
        )


def test_filters_past_their_bounds_are_invalid_argument(stub, seeded: DbApiClient) -> None:
    """These answered INTERNAL (deep JSON, long numbers), or counted on SQLite what MongoDB refuses."""
    eq = pb.OPERATOR_EQ
    for filters, needle in (
        ([pb.Condition(field="ses", op=eq, value_json="[" * 100_000 + "]" * 100_000)], "nests too deeply"),
        ([pb.Condition(field="ses", op=eq, value_json="1" * 5_000)], "digits"),
        ([pb.Condition(field="ses", op=eq, value_json=str(2**70))], "64 bits"),
        ([pb.Condition(field=f"f{i}", op=eq, value_json="1") for i in range(33)], "at most 32"),
    ):
        for request in (
            pb.CountRequest(collection="raw", filter=filters),
            pb.ScanRequest(collection="raw", filter=filters),
        ):
            call = stub.Count if isinstance(request, pb.CountRequest) else stub.Scan
            code, message = _code(
                lambda call=call, request=request: (
                    list(call(request, metadata=METADATA))
                    if call is stub.Scan
                    else call(request, metadata=METADATA)
                )
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT and needle in message, message
    assert seeded.health() == "SERVING"
    values = [pb.Condition(field=f"f{i}", op=eq, value_json='"' + "x" * 900_000 + '"') for i in range(5)]
    with pytest.raises(InvalidArgument, match="at most 4 MiB of JSON in all"):
        conditions_from_proto(values)  # the test db-api's messages are smaller than that


def test_bad_json_documents_are_invalid_argument(stub, seeded: DbApiClient) -> None:
    for text in ("{oops", "[1, 2]", '{"_id": "other"}', '{"$set": {"a": 1}}'):
        request = pb.PutDocumentRequest(collection="runs", id="r1", json=text)
        code, _ = _code(lambda request=request: stub.PutDocument(request, metadata=METADATA))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert seeded.get_document("runs", "r1") is None


def test_write_without_a_mode_is_refused(stub, seeded: DbApiClient) -> None:
    request = pb.WriteBatchesRequest(collection="raw", arrow_ipc=table_to_ipc(pa.table({"_id": ["z"]})))
    code, message = _code(lambda: stub.WriteBatches(iter([request]), metadata=METADATA))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "mode" in message


@pytest.mark.parametrize(
    "column",
    [
        pa.array([568_000_000_000_000], pa.timestamp("ms")),  # year 19969
        pa.array([10**17], pa.timestamp("s")),  # would wrap around when converted to ms
        pa.array([-(10**15)], pa.timestamp("ms", tz="UTC")),  # before year 1
        pa.array([{"when": 568_000_000_000_000}], pa.struct([("when", pa.timestamp("ms"))])),
    ],
)
def test_timestamps_no_reader_could_decode_are_refused(seeded: DbApiClient, column: pa.Array) -> None:
    before = _snapshot(seeded)
    with pytest.raises(DbApiCallError) as error:
        seeded.write("raw", pa.table({"_id": ["t"], "when": column}))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert _snapshot(seeded) == before


def test_a_tiny_message_describing_millions_of_values_is_refused(stub, seeded: DbApiClient) -> None:
    bomb = table_to_ipc(pa.table({"_id": pa.nulls(30_000_000)}))
    assert len(bomb) < 4_000_000
    request = pb.WriteBatchesRequest(collection="raw", mode=pb.WRITE_MODE_INSERT, arrow_ipc=bomb)
    code, message = _code(lambda: stub.WriteBatches(iter([request]), metadata=METADATA))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "smaller batches" in message
    assert seeded.health() == "SERVING"


def test_documents_nested_deeper_than_the_limit_are_refused(seeded: DbApiClient) -> None:
    deep: dict = {"leaf": 1}
    for _ in range(60):
        deep = {"n": deep}
    with pytest.raises(DbApiCallError, match="nests deeper"):
        seeded.insert_one("processed", {"_id": "deep", "d": deep})
    nested_type = pa.int64()
    for _ in range(60):
        nested_type = pa.struct([("n", nested_type)])
    with pytest.raises(DbApiCallError, match="nests deeper"):
        seeded.write("processed", pa.table({"_id": ["d"], "d": pa.nulls(1, nested_type)}))
    assert seeded.scan("processed", column_types="as_stored").num_rows == 0


def test_bad_extended_json_and_oversized_decimals_are_invalid_argument(stub, seeded: DbApiClient) -> None:
    for text in ('{"x": {"$oid": "zz"}}', '{"x": {"$numberDecimal": "abc"}}', '{"x": {"$date": 1e20}}'):
        request = pb.PutDocumentRequest(collection="runs", id="r1", json=text)
        assert _code(lambda request=request: stub.PutDocument(request, metadata=METADATA))[0] == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
    decimals = pa.array([decimal.Decimal("1" * 40)], pa.decimal256(40, 0))
    with pytest.raises(DbApiCallError) as error:
        seeded.write("processed", pa.table({"_id": ["big"], "v": decimals}))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_scan_schemas_and_limits_are_invalid_argument(stub, seeded: DbApiClient) -> None:
    duplicate = pa.schema([("_id", pa.string()), ("_id", pa.string())])
    with pytest.raises(DbApiCallError) as error:
        seeded.scan("raw", schema=duplicate)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    request = pb.ScanRequest(collection="raw", limit=2**63)
    assert _code(lambda: list(stub.Scan(request, metadata=METADATA)))[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_the_reserved_sequence_field_cannot_be_written_filtered_or_projected(seeded: DbApiClient) -> None:
    for call in (
        lambda: seeded.write("raw", pa.table({"_id": ["s"], "_wb_seq": [1]})),
        lambda: seeded.scan("raw", columns=["_wb_seq"]),
        lambda: seeded.count("raw", {"_wb_seq": 1}),
    ):
        with pytest.raises(DbApiCallError, match="reserved"):
            call()


def test_a_record_cannot_be_both_cleaned_and_quarantined_in_one_commit(seeded: DbApiClient) -> None:
    record = pa.table({"submission_id": ["keep1"]})
    with pytest.raises(DbApiCallError, match="both cleaned and quarantined"):
        seeded.commit_clean(record, record, ["keep1"])
    assert seeded.get("raw", "keep1") is not None


@pytest.mark.parametrize("duplicates", [5, [[{"x": 1}]], [["a"]], [7], "keep2"])
def test_a_cleaned_record_whose_duplicates_are_not_ids_is_refused(
    seeded: DbApiClient, duplicates: object
) -> None:
    """`duplicates` names the raw ids merged into a record: anything else answered INTERNAL, after a
    MongoDB store without transactions had already written part of the commit."""
    before = _snapshot(seeded)
    record = pa.table({"submission_id": ["keep1"], "duplicates": pa.array([duplicates])})
    with pytest.raises(DbApiCallError) as refused:
        seeded.commit_clean(record, None, ["keep1"])
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "duplicates" in refused.value.details
    assert _snapshot(seeded) == before


def test_insert_each_refuses_each_bad_document_alone_and_stores_the_rest(stub, seeded: DbApiClient) -> None:
    good = [bson.encode({"_id": f"each{i}", "ses": "1"}) for i in range(3)]
    bad = [b"\x05\x00\x00\x00\x01", bson.encode({"_id": "bad", "$where": 1}), bson.encode({"_id": ""})]
    request = pb.InsertEachRequest(collection="raw", documents_bson=[good[0], *bad, good[1], good[2]])
    reply = stub.InsertEach(request, metadata=METADATA)
    codes = [grpc.StatusCode.OK.value[0], *[grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 3, 0, 0]
    assert [o.status_code for o in reply.outcomes] == codes
    assert "malformed BSON" in reply.outcomes[1].status_message
    assert all(o.status_message for o in reply.outcomes[1:4])
    assert [o.result.id for o in reply.outcomes if not o.status_code] == ["each0", "each1", "each2"]
    assert seeded.count("raw") == 5


def test_insert_each_refuses_too_many_documents_before_storing_any(stub, seeded: DbApiClient) -> None:
    documents = [bson.encode({"_id": f"many{i}"}) for i in range(MAX_INSERT_EACH + 1)]
    request = pb.InsertEachRequest(collection="raw", documents_bson=documents)
    code, message = _code(lambda: stub.InsertEach(request, metadata=METADATA))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"at most {MAX_INSERT_EACH}" in message
    unknown = pb.InsertEachRequest(collection="nope", documents_bson=documents[:1])
    assert _code(lambda: stub.InsertEach(unknown, metadata=METADATA))[0] == grpc.StatusCode.NOT_FOUND
    assert seeded.count("raw") == 2


def test_a_compressed_message_is_refused_before_it_is_inflated(stub, seeded: DbApiClient) -> None:
    """33 KB of zstd inflated to 1 GiB in the db-api (a review measured 4.5 GB at its peak): a
    message's size bounds nothing once it may be compressed. The workbench client never compresses."""
    before = _snapshot(seeded)
    table = pa.table({"_id": ["z1"], "z": pa.array([bytes(8 << 20)], pa.large_binary())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write(table)
    bomb = sink.getvalue().to_pybytes()
    assert len(bomb) < 4_000
    request = pb.WriteBatchesRequest(collection="raw", mode=pb.WRITE_MODE_INSERT, arrow_ipc=bomb)
    code, message = _code(lambda: stub.WriteBatches(iter([request]), metadata=METADATA))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "compressed" in message
    commit = pb.CommitCleanRequest(cleaned_arrow_ipc=bomb, raw_ids=["keep1"])
    code, message = _code(lambda: stub.CommitClean(commit, metadata=METADATA))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "compressed" in message
    assert _snapshot(seeded) == before


def test_a_long_field_name_repeated_by_millions_of_nulls_is_refused_before_it_is_encoded(
    stub, seeded: DbApiClient
) -> None:
    """A few KB of IPC: 200 records of 12,000 list items each, every item a struct whose field has
    a 900-character name and no value. As BSON every item repeats the name: 2.2 GB (a review
    measured 4.4 GB at the db-api's peak before it failed)."""
    items = pa.StructArray.from_arrays([pa.nulls(2_400_000)], names=["n" * 900])
    lists = pa.ListArray.from_arrays(pa.array(range(0, 2_400_001, 12_000), pa.int32()), items)
    payload = table_to_ipc(pa.table({"_id": [f"b{i}" for i in range(200)], "l": lists}))
    assert len(payload) < 10_000
    before = _snapshot(seeded)
    request = pb.WriteBatchesRequest(collection="raw", mode=pb.WRITE_MODE_INSERT, arrow_ipc=payload)
    code, message = _code(lambda: stub.WriteBatches(iter([request]), metadata=METADATA))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "shorter field names" in message
    commit = pb.CommitCleanRequest(quarantine_arrow_ipc=payload, raw_ids=["keep1"], key="_id")
    code, message = _code(lambda: stub.CommitClean(commit, metadata=METADATA))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "shorter field names" in message
    assert _snapshot(seeded) == before


def test_a_dictionary_encoded_column_is_refused_before_it_is_expanded(stub, seeded: DbApiClient) -> None:
    """One 1 MiB value referenced 2,000 times (a 1 MB message) became 2 GB of Python strings."""
    values = pa.DictionaryArray.from_arrays(pa.array([0] * 2_000, pa.int32()), pa.array(["x" * (1 << 20)]))
    table = pa.table({"_id": [f"d{i}" for i in range(2_000)], "big": values})
    payload = table_to_ipc(table)
    request = pb.WriteBatchesRequest(collection="raw", mode=pb.WRITE_MODE_INSERT, arrow_ipc=payload)
    code, message = _code(lambda: stub.WriteBatches(iter([request]), metadata=METADATA))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "dictionary" in message
    assert seeded.count("raw") == 2


def test_the_client_sends_a_pandas_category_as_its_values(seeded: DbApiClient) -> None:
    frame = pd.DataFrame({"_id": ["k1", "k2"], "sector": pd.Categorical(["public", "private"])})
    seeded.write("cleaned", frame, mode="upsert")
    rows = seeded.scan("cleaned").to_pylist()
    sectors = {row["_id"]: row["sector"] for row in rows if row["_id"] != "c1"}
    assert sectors == {"k1": "public", "k2": "private"}


def test_documents_each_naming_other_fields_are_scanned_in_batches_that_fit(seeded: DbApiClient) -> None:
    """A page is cut by BSON bytes, but each such document adds a column that is null in every
    other row: 8,000 of them made a reply of 520 MB (3.5 GB at the db-api's peak) and failed."""
    seeded.write("processed", pd.DataFrame({"_id": ["first"], "n": [0]}))
    stub_docs = [{"_id": f"u{i}", f"f{i}": i} for i in range(3_000)]
    for start in range(0, len(stub_docs), 1_000):
        seeded.insert_each("processed", stub_docs[start : start + 1_000])
    batches = list(seeded.scan_batches("processed", batch_size=3_001, column_types="as_stored"))
    assert sum(batch.num_rows for batch in batches) == 3_001 and len(batches) > 1
    assert max(batch.num_rows * batch.num_columns for batch in batches) <= 2_000_000
