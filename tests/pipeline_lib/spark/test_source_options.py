"""The `workbench` source's db-api options: built once from an endpoint, read back the same."""

from __future__ import annotations

from pipeline_lib.client.core import MIB, Endpoint
from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.client.tls import ClientTls
from pipeline_lib.spark.source import DEFAULT_READ_BATCH, SourceOptions, db_api_options, job_options

TLS = ClientTls(b"-----BEGIN CA-----", b"-----BEGIN CERT-----", b"-----BEGIN KEY-----")


def test_the_options_of_an_endpoint_read_back_as_that_endpoint() -> None:
    endpoint = Endpoint("db:5005", "t", 8 * MIB, TLS)
    options = db_api_options(endpoint)
    assert SourceOptions.parse({"collection": "raw", **options}).endpoint == endpoint


def test_an_endpoint_without_token_or_tls_sends_neither() -> None:
    assert db_api_options(Endpoint("db:5005")) == {"address": "db:5005", "max_message_mb": "64"}


def test_a_job_reads_with_its_clients_db_api_pem_included() -> None:
    with DbApiClient("db:5005", "t", max_message_bytes=16 * MIB, tls=TLS) as client:
        options = job_options(client.endpoint, "cleaned", partitions=3)
    assert options.endpoint == client.endpoint  # address, token, message size and TLS PEM
    assert (options.collection, options.partitions, options.read_batch_size) == (
        "cleaned",
        3,
        DEFAULT_READ_BATCH,
    )
    assert job_options(client.endpoint, "raw", partitions=0).partitions == 1
