"""What comes before a request's body is bounded by the server itself (`web_app.http_protocol`):
a head's size, its time to arrive, and requests pipelined on one connection. Each attack runs
against the app served as `workbench web` serves it (uvicorn with the same options)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.web_app.conftest import WebStack
from web_app.http_protocol import MAX_HEAD_BYTES, MAX_PIPELINED

pytestmark = pytest.mark.parametrize("web_settings", [{"upload_idle_seconds": 2.0}], indirect=True)


def _connect(stack: WebStack) -> socket.socket:
    host, port = stack.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_to_end(sock: socket.socket, wait: float = 10) -> bytes | None:
    """Everything the server sent until it closed the connection; None if it kept it open."""
    sock.settimeout(wait)
    data = b""
    try:
        while piece := sock.recv(65536):
            data += piece
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


def _drip(sock: socket.socket, piece: bytes, times: int, pause: float) -> int:
    """Send `piece` `times` times, `pause` seconds apart, until the server closes: how many went."""
    for sent in range(times):
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        time.sleep(pause)
    return times


def test_a_head_sent_in_small_pieces_past_its_limit_is_refused(stack: WebStack) -> None:
    """A header value sent a kilobyte at a time was gathered by copying it whole at each piece:
    quadratic time on the event loop, and no limit to its size (review: 4.7 s for 4 MiB)."""
    with _connect(stack) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: workbench\r\nX-Padding: ")
        _drip(sock, b"a" * 1024, 4 * MAX_HEAD_BYTES // 1024, 0.001)  # closed on us: asserted below
        answer = _read_to_end(sock)
    assert answer is not None, "the server waited for the head's end"
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert httpx.get(f"{stack.url}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("head", [b"", b"GET /healthz HTTP/1.1\r\nHost: work"], ids=["nothing", "part"])
def test_a_head_that_does_not_arrive_in_time_closes_the_connection(stack: WebStack, head: bytes) -> None:
    """A connection that sent nothing, or a head a byte at a time, was held for ever: enough of
    them take every file descriptor the server may open."""
    with _connect(stack) as sock:
        started = time.monotonic()
        sock.sendall(head)
        _drip(sock, b"b", 20 if head else 0, 0.3)  # a byte every 0.3 s: never idle long, never done
        answer = _read_to_end(sock, wait=10)
    assert answer == b"", answer
    assert time.monotonic() - started < 10


def test_requests_pipelined_past_the_cap_close_the_connection(stack: WebStack) -> None:
    """Pipelined requests queued without bound: 10 MiB of them held 711 MB (review)."""
    request = b"GET /healthz HTTP/1.1\r\nHost: workbench\r\n\r\n"
    with _connect(stack) as sock:
        sock.sendall(request * 2000)
        answer = _read_to_end(sock)
    assert answer is not None, "the server kept the connection"
    assert answer.count(b"HTTP/1.1 200 ") <= MAX_PIPELINED + 1


def test_a_few_pipelined_requests_are_all_answered_in_order(stack: WebStack) -> None:
    requests = b"".join(f"GET /healthz?n={n} HTTP/1.1\r\nHost: workbench\r\n\r\n".encode() for n in range(10))
    with _connect(stack) as sock:
        sock.sendall(requests + b"GET /healthz HTTP/1.1\r\nHost: workbench\r\nConnection: close\r\n\r\n")
        answer = _read_to_end(sock)
    assert answer is not None and answer.count(b"HTTP/1.1 200 ") == 11, answer


def test_stray_bytes_after_a_response_do_not_keep_the_connection(stack: WebStack) -> None:
    """Line breaks between requests start no request, but reset uvicorn's keep-alive timer: a
    connection sending one every few tenths of a second was held for ever (review)."""
    with _connect(stack) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: workbench\r\n\r\n")
        started = time.monotonic()
        _drip(sock, b"\r\n", 30, 0.3)
        answer = _read_to_end(sock, wait=10)
    assert answer is not None and answer.startswith(b"HTTP/1.1 200 "), answer
    assert time.monotonic() - started < 9  # closed before the client stopped (30 x 0.3 s)


def test_trailers_past_the_head_limit_close_the_connection(stack: WebStack) -> None:
    """Trailer lines after a chunked body's last chunk were gathered without limit (review)."""
    with _connect(stack) as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: workbench\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
        trailers = 8 * MAX_HEAD_BYTES // 1013
        sent = _drip(sock, b"X-Trailer: " + b"t" * 1000 + b"\r\n", trailers, 0.001)
        answer = _read_to_end(sock)
    assert sent < trailers, "the server read every trailer"
    assert answer is not None
