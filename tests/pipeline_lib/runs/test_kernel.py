"""The kernel manager runs use: the kernel on Unix sockets in a private folder, no TCP warning."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import nbformat
import papermill
import pytest

from pipeline_lib.runs import kernel
from pipeline_lib.runs.kernel import LocalKernelManager, ensure_kernel, short_temp_root

# What the kernel itself sees: the transport and folder of its connection file.
CELL = """\
import json, os
from ipykernel import get_connection_file
info = json.load(open(get_connection_file()))
mode = os.stat(os.path.dirname(info["ip"])).st_mode & 0o777
print(json.dumps({"transport": info["transport"], "ip": info["ip"], "mode": mode}))
"""


def _run_cell(tmp_path: Path, source: str) -> nbformat.NotebookNode:
    """Run a one-cell notebook with papermill on the workbench kernel: the cell as executed."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source)]
    notebook.metadata["kernelspec"] = {"name": "workbench", "display_name": "workbench", "language": "python"}
    nbformat.write(notebook, tmp_path / "in.ipynb")
    papermill.execute_notebook(
        str(tmp_path / "in.ipynb"),
        str(tmp_path / "out.ipynb"),
        kernel_name=ensure_kernel(),
        kernel_manager_class="pipeline_lib.runs.kernel.LocalKernelManager",  # as the executor passes it
        progress_bar=False,
    )
    return nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0]


def test_a_papermill_run_talks_to_its_kernel_over_private_unix_sockets(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (output,) = _run_cell(tmp_path, CELL).outputs
    seen = json.loads(output["text"])
    assert seen["transport"] == "ipc" and seen["mode"] == 0o700
    folder = Path(seen["ip"]).parent
    assert folder.parent == Path(short_temp_root()) and folder.name.startswith("wb-kernel-")
    assert len(seen["ip"]) + 3 < 107  # `<ip>-N`: a Unix socket path holds 107 bytes
    assert "without encryption" not in capfd.readouterr().err  # the kernel's stderr is ours
    assert not folder.exists()  # removed with the kernel


def test_the_transport_can_still_be_configured() -> None:
    assert LocalKernelManager().transport == "ipc"
    assert LocalKernelManager(transport="tcp").transport == "tcp"


# As pyzmq reports an exception in a message callback: one from sending on a socket the kernel
# already closed (its shutdown race), one from anything else; to the kernel's own stderr.
STREAM_ERRORS = """\
import errno, logging, sys, zmq
from tornado.log import gen_log
logging.basicConfig(stream=sys.__stderr__)
for number in (errno.ENOTSOCK, errno.EAGAIN):
    try:
        raise zmq.ZMQError(number)
    except zmq.ZMQError:
        gen_log.error("Uncaught exception in ZMQStream callback, errno %d", number, exc_info=True)
sys.__stderr__.flush()
"""


def test_a_kernel_prints_no_traceback_for_its_send_on_a_closed_socket_and_keeps_other_errors(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """CI saw `workbench run all` end with a kernel's traceback: asked to shut down, ipykernel
    published its idle status on the IOPub socket it had closed ("Socket operation on non-socket")."""
    _run_cell(tmp_path, STREAM_ERRORS)
    err = capfd.readouterr().err
    assert f"errno {errno.EAGAIN}" in err and "Resource temporarily unavailable" in err
    assert f"errno {errno.ENOTSOCK}" not in err and "non-socket" not in err


def test_the_folders_of_kernels_that_died_with_their_manager_go_when_the_next_kernel_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run killed outright (kill -9, out of memory) removes nothing: its kernel's socket folder
    stayed in /tmp. The next manager removes it once nothing listens on its sockets."""
    root = Path(tempfile.mkdtemp(prefix="wbt-", dir="/tmp"))  # short: sockets fit under it
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    try:
        dead, live, young = (root / f"{kernel.FOLDER_PREFIX}{name}" for name in ("dead", "live", "young"))
        for folder in (dead, live, young):
            folder.mkdir()
            (folder / "kernel.json").write_text("{}")
        closed = socket.socket(socket.AF_UNIX)
        closed.bind(str(dead / "kernel-ipc-1"))  # its file stays, with no listener
        closed.close()
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(str(live / "kernel-ipc-1"))
        listening.listen()
        long_ago = time.time() - kernel.STALE_AFTER - 60
        for folder in (dead, live):
            os.utime(folder, (long_ago, long_ago))

        manager = LocalKernelManager()
        made = Path(manager.connection_file).parent  # a new manager's folder, made now

        assert not dead.exists()
        assert live.exists() and young.exists()  # a kernel running, and one starting
        assert made.parent == root and made.exists()
        listening.close()
    finally:
        shutil.rmtree(root)


def test_a_link_named_like_a_kernel_folder_removes_nothing_it_points_at(tmp_path: Path) -> None:
    """Anyone can make /tmp/wb-kernel-x a link to a folder of ours: the sweep never follows it."""
    target = tmp_path / "precious"
    target.mkdir()
    (target / "kernel.json").write_text("{}")
    link = tmp_path / f"{kernel.FOLDER_PREFIX}link"
    link.symlink_to(target)
    long_ago = time.time() - kernel.STALE_AFTER - 60
    os.utime(target, (long_ago, long_ago))
    kernel.remove_stale_folders(str(tmp_path))
    assert (target / "kernel.json").exists()
