"""A preheated Voilà kernel waiting for its viewer: what `voila.utils.wait_for_request` does, without
importing `voila.utils`, which loads Jupyter Server, JupyterLab Server and jsonschema's format
grammars. That import cost 1.1 s of CPU in an idle kernel and 2.7-5.7 s in each of the five kernels
`workbench up` preheats at once: most of the preheating, while a user's first run competes for
the same two cores.

Voilà's protocol (0.5): the kernel opens a WebSocket to
`{VOILA_WS_PROTOCOL}://{VOILA_APP_IP}:{VOILA_APP_PORT}{VOILA_WS_BASE_URL}voila/query/{VOILA_KERNEL_ID}`
(the base URL defaults to `VOILA_SERVER_URL`); when Voilà hands the kernel to a viewer it sends one
JSON object, the viewer's request (`QUERY_STRING`, `PATH_INFO`, ...), which becomes environment
variables of the kernel. If the socket cannot be opened the page is drawn at once, as Voilà does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

# Voilà sends a handful of short request variables; anything near this is not Voilà.
MAX_MESSAGE_BYTES = 1 << 20
OPEN_TIMEOUT_SECONDS = 5.0  # as Voilà's own helper


def request_socket_url(environ: Mapping[str, str]) -> str:
    """Where this kernel's Voilà sends the viewer's request, from the variables Voilà set."""
    protocol = environ.get("VOILA_WS_PROTOCOL", "ws")
    host = environ.get("VOILA_APP_IP", "127.0.0.1")
    port = environ.get("VOILA_APP_PORT", "8866")
    base = environ.get("VOILA_WS_BASE_URL", environ.get("VOILA_SERVER_URL", "/"))
    return f"{protocol}://{host}:{port}{base}voila/query/{environ.get('VOILA_KERNEL_ID', '')}"


def request_variables(message: str | bytes) -> dict[str, str]:
    """The viewer's request as environment variables: the message's string entries (other entries,
    or a message that is not a JSON object, give nothing)."""
    try:
        found = json.loads(message)
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str) and "\0" not in k + v}


def wait_for_request(environ: MutableMapping[str, str] = os.environ) -> dict[str, str] | None:
    """Block until Voilà hands this kernel to a viewer; put the viewer's request into `environ` and
    return it. None (at once) when Voilà's socket cannot be reached or closes without a request."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    url = request_socket_url(environ)
    try:
        with connect(url, open_timeout=OPEN_TIMEOUT_SECONDS, max_size=MAX_MESSAGE_BYTES) as socket:
            message = socket.recv()
    # OSError includes a timeout; WebSocketException a bad URL, a refused handshake, a closed socket.
    except (OSError, WebSocketException) as exc:
        log.warning("no viewer's request from %s (%s); drawing the page now", url, exc)
        return None
    variables = request_variables(message)
    environ.update(variables)
    return variables
