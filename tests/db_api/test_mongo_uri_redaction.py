"""The MongoDB URI's password never reaches an error message, a log line or a chained traceback."""

from __future__ import annotations

import logging
import traceback

import pytest

from db_api.store.mongo import MongoStore, redact
from pipeline_lib.wire.errors import Unavailable
from tests.wire_servers import free_port

PASSWORD = "pa:ss@w0rd/1"  # percent-encoded in the URI, as MongoDB requires
URI_PASSWORD = "pa%3Ass%40w0rd%2F1"


def test_redact_hides_the_password_in_both_spellings() -> None:
    uri = f"mongodb://app:{URI_PASSWORD}@db1,db2/workbench?replicaSet=rs0"
    text = f"cannot use {uri}: authentication failed for app with {PASSWORD}"
    assert redact(text, uri) == "cannot use mongodb://app:***@db1,db2/workbench?replicaSet=rs0: " + (
        "authentication failed for app with ***"
    )
    assert redact("mongodb://db1/workbench", "mongodb://db1/workbench") == "mongodb://db1/workbench"


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_an_unreachable_server_is_reported_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    uri = f"mongodb://app:{URI_PASSWORD}@127.0.0.1:{free_port()}/workbench"
    with pytest.raises(Unavailable) as raised:
        MongoStore(uri, timeout_ms=300)
    said = _everything_said(raised.value) + caplog.text
    assert "cannot be used" in said and "mongodb://app:***@127.0.0.1" in said
    assert URI_PASSWORD not in said and PASSWORD not in said


def test_a_malformed_uri_is_reported_without_the_password() -> None:
    uri = f"mongodb://app:{URI_PASSWORD}@127.0.0.1:notaport/workbench"
    with pytest.raises(Unavailable) as raised:
        MongoStore(uri, timeout_ms=300)
    said = _everything_said(raised.value)
    assert "is not usable" in said and URI_PASSWORD not in said and PASSWORD not in said
