"""Which messages from a live page's browser are the viewer's activity (`web_app.voila_proxy`):
read from the header's `msg_type` only, at a bounded cost, in both of jupyter_server's protocols.
Frames are built as jupyter_server builds them; the whole path is in test_live_dashboards.py."""

from __future__ import annotations

import json
import struct
import uuid

import pytest
from jupyter_server.services.kernels.connection.base import (
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from web_app.voila_proxy import MAX_TYPE_READ, viewer_activity


def _message(msg_type: str, content: dict | None = None, parent_type: str = "") -> dict:
    """Keys in the order JupyterLab's `createMessage` writes them: the content before the header."""
    return {
        "buffers": [],
        "channel": "shell",
        "content": content or {},
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": "s", "username": "",
                   "version": "5.2", "date": "2026-01-01T00:00:00Z"},
        "metadata": {},
        "parent_header": {"msg_type": parent_type} if parent_type else {},
    }  # fmt: skip


def _v1(message: dict, buffers: list[bytes] | None = None) -> bytes:
    parts = [json.dumps(message[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
    return serialize_msg_to_ws_v1(parts + (buffers or []), message["channel"])


@pytest.mark.parametrize("msg_type", ["kernel_info_request", "comm_info_request"])
def test_asking_the_kernels_or_its_comms_info_is_not_activity(msg_type: str) -> None:
    message = _message(msg_type, {"target_name": "jupyter.widget"} if msg_type.startswith("comm") else {})
    assert not viewer_activity(json.dumps(message), v1=False)
    assert not viewer_activity(_v1(message), v1=True)


@pytest.mark.parametrize("msg_type", ["comm_msg", "comm_open", "comm_close", "shutdown_request"])
def test_a_widgets_messages_and_the_rest_are_activity(msg_type: str) -> None:
    change = {"comm_id": "c", "data": {"method": "update", "state": {"value": "private"}}}
    assert viewer_activity(json.dumps(_message(msg_type, change)), v1=False)
    assert viewer_activity(_v1(_message(msg_type, change), [b"\x00" * 100]), v1=True)


def test_only_the_headers_type_counts() -> None:
    """A parent header's or content's `msg_type` is not the message's."""
    answer = _message("comm_msg", {"msg_type": "kernel_info_request"}, parent_type="kernel_info_request")
    assert viewer_activity(json.dumps(answer), v1=False)
    assert viewer_activity(_v1(answer), v1=True)
    ask = _message("kernel_info_request", parent_type="comm_msg")
    assert not viewer_activity(json.dumps(ask), v1=False) and not viewer_activity(_v1(ask), v1=True)


def test_a_message_too_long_to_read_cheaply_is_activity() -> None:
    padded = _message("kernel_info_request", {"pad": "x" * MAX_TYPE_READ})
    assert viewer_activity(json.dumps(padded), v1=False)
    long_header = _message("kernel_info_request")
    long_header["header"]["pad"] = "x" * MAX_TYPE_READ
    assert viewer_activity(_v1(long_header), v1=True)
    # In v1 only the header is read: a long content or buffers do not matter.
    assert not viewer_activity(_v1(padded, [b"\x00" * (1 << 20)]), v1=True)


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        "[" * 5000,  # nested past the parser's depth
        json.dumps(["kernel_info_request"]),
        json.dumps({"msg_type": "kernel_info_request"}),  # no header: Voilà ignores it
        json.dumps({"header": {"msg_type": ["kernel_info_request"]}}),
        json.dumps({"header": "kernel_info_request"}),
    ],
)
def test_a_text_frame_whose_type_cannot_be_read_is_activity(frame: str) -> None:
    assert viewer_activity(frame, v1=False)


def _offsets(*values: int) -> bytes:
    return struct.pack("<" + "Q" * len(values), *values)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00" * 31,
        _offsets(2, 24, 29) + b"shell",  # no header part
        _offsets(6, 56, 61, 10**12, 0, 0, 0) + b"shell{}",  # the header past the frame's end
        _offsets(6, 56, 61, 40, 0, 0, 0) + b"shell{}",  # the header ending before it starts
        _offsets(6, 56, 61, 68, 0, 0, 0) + b"shell\xff\xfe\x00{}\x00\x00",  # not UTF-8 JSON
    ],
)
def test_a_binary_frame_whose_type_cannot_be_read_is_activity(frame: bytes) -> None:
    assert viewer_activity(frame, v1=True)


def test_a_binary_frame_without_the_v1_protocol_is_activity() -> None:
    """The legacy protocol sends a message with buffers as binary: never one of those requests."""
    legacy = serialize_binary_message(_message("kernel_info_request") | {"buffers": [b"\x00"]})
    assert viewer_activity(legacy, v1=False)
    assert viewer_activity(_v1(_message("kernel_info_request")), v1=False)
