"""A preheated dashboard kernel waits for its viewer over Voilà's request socket, played here by a
real WebSocket server on loopback; the full path through Voilà is in tests/e2e/test_dashboards_browser.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from pipeline_lib.dashboards import viewer_request
from pipeline_lib.dashboards.viewer_request import request_socket_url, request_variables, wait_for_request
from tests.processes import python_output
from tests.wire_servers import free_port

KERNEL = "6acc239e-989c-4c73-bba6-7a798b8bcb1d"


@contextmanager
def voila_socket(handler: Callable[[ServerConnection], None]) -> Iterator[tuple[dict[str, str], list[str]]]:
    """A WebSocket server as Voilà's request socket: yields a preheated kernel's environment that
    points at it, and the paths kernels opened."""
    paths: list[str] = []

    def handle(connection: ServerConnection) -> None:
        paths.append(connection.request.path if connection.request else "")
        handler(connection)

    with serve(handle, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield _environment(server), paths
        server.shutdown()


def _environment(server: Server) -> dict[str, str]:
    port = server.socket.getsockname()[1]
    return {
        "VOILA_PREHEAT": "True",
        "VOILA_APP_IP": "127.0.0.1",
        "VOILA_APP_PORT": str(port),
        "VOILA_SERVER_URL": "/dashboards/live/",
        "VOILA_KERNEL_ID": KERNEL,
    }


def test_the_kernel_waits_for_the_viewer_and_takes_its_request() -> None:
    handed_over = threading.Event()

    def viewer_arrives(connection: ServerConnection) -> None:
        handed_over.wait(10)
        connection.send(json.dumps({"QUERY_STRING": "school=9237", "PATH_INFO": "/overview.ipynb"}))

    with voila_socket(viewer_arrives) as (environ, paths):
        threading.Timer(0.5, handed_over.set).start()
        started = time.monotonic()
        got = wait_for_request(environ)
        waited = time.monotonic() - started
    assert got == {"QUERY_STRING": "school=9237", "PATH_INFO": "/overview.ipynb"}
    assert environ["QUERY_STRING"] == "school=9237" and environ["PATH_INFO"] == "/overview.ipynb"
    assert paths == [f"/dashboards/live/voila/query/{KERNEL}"]
    assert waited >= 0.4, "returned before the viewer arrived"


def test_without_voila_the_page_is_drawn_at_once() -> None:
    environ = {"VOILA_APP_IP": "127.0.0.1", "VOILA_APP_PORT": str(free_port()), "VOILA_KERNEL_ID": KERNEL}
    assert wait_for_request(environ) is None
    assert "QUERY_STRING" not in environ


def test_a_socket_closed_without_a_request_draws_the_page() -> None:
    with voila_socket(lambda connection: connection.close()) as (environ, _):
        assert wait_for_request(environ) is None


def test_an_oversized_or_malformed_request_sets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(viewer_request, "MAX_MESSAGE_BYTES", 1024)
    with voila_socket(lambda connection: connection.send("x" * 4096)) as (environ, _):
        assert wait_for_request(environ) is None
    with voila_socket(lambda connection: connection.send('["QUERY_STRING"]')) as (environ, _):
        assert wait_for_request(environ) == {}
    assert "QUERY_STRING" not in environ


def test_the_socket_url_follows_voilas_variables() -> None:
    assert request_socket_url({}) == "ws://127.0.0.1:8866/voila/query/"
    environ = {"VOILA_APP_PORT": "9000", "VOILA_SERVER_URL": "/a/", "VOILA_KERNEL_ID": "k"}
    assert request_socket_url(environ) == "ws://127.0.0.1:9000/a/voila/query/k"
    environ.update(VOILA_WS_BASE_URL="/b/", VOILA_WS_PROTOCOL="wss", VOILA_APP_IP="10.0.0.2")
    assert request_socket_url(environ) == "wss://10.0.0.2:9000/b/voila/query/k"


def test_only_string_variables_are_taken() -> None:
    message = json.dumps({"QUERY_STRING": "a=1", "SERVER_PORT": 80, "BAD": "x\u0000y", "NESTED": {"a": "b"}})
    assert request_variables(message) == {"QUERY_STRING": "a=1"}
    assert request_variables("not json") == {} and request_variables("null") == {}


def test_a_dashboard_kernel_never_imports_voila() -> None:
    """Importing `voila` loads Jupyter Server and jsonschema's grammars: seconds of CPU in every
    preheated kernel. A dashboard's cells up to the wait, and the wait itself, do without it."""
    code = (
        "import os, sys\n"
        "os.environ.update(VOILA_PREHEAT='True', VOILA_APP_PORT=sys.argv[1])\n"
        "from pipeline_lib.dashboards import all_results, overview, page, quality, schools\n"
        "from pipeline_lib.dashboards import statistical_models\n"
        "page.wait_for_viewer()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('voila', 'jupyter_server')))\n"
    )
    assert python_output(code, str(free_port())).strip() == "[]"
