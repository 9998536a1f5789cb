"""The project's Jupyter kernel, registered inside the venv so runs never depend on a system kernel,
and the kernel manager runs use: the kernel on this machine, reached over Unix sockets (IPC)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import CaselessStrEnum, default

from pipeline_lib.runs.kernel_client import ReadyKernelClient

KERNEL_NAME = "workbench"
STARTUP_EXTENSION = "pipeline_lib.runs.kernel_startup"
DISPLAY_NAME = "Student Data Workbench (Python 3)"

# A Unix socket path holds at most 107 bytes; the kernel's sockets are `<folder>/kernel-ipc-N`.
_SOCKET_FOLDER_MAX = 80
FOLDER_PREFIX = "wb-kernel-"
# A kernel's folder this old has the kernel's sockets in it, if the kernel lives.
STALE_AFTER = 600.0


def kernel_spec_dir() -> Path:
    return Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def ensure_kernel() -> str:
    """Register the kernel into `sys.prefix` unless it is there and runs this interpreter."""
    spec = kernel_spec_dir() / "kernel.json"
    try:
        if json.loads(spec.read_text())["argv"][0] == sys.executable:
            return KERNEL_NAME
    except (OSError, ValueError, KeyError, IndexError):
        pass
    from ipykernel.kernelspec import install

    install(prefix=sys.prefix, kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME)
    return KERNEL_NAME


def short_temp_root() -> str:
    """The temporary folder, or /tmp when its path is too long to hold the kernel's sockets."""
    root = tempfile.gettempdir()
    return root if len(root) <= _SOCKET_FOLDER_MAX - 30 else "/tmp"


def remove_stale_folders(root: str) -> None:
    """The socket folders under `root` of kernels gone with their manager (a run killed outright
    cleans nothing up): this user's, older than STALE_AFTER, where no socket has a listener."""
    for folder in Path(root).glob(f"{FOLDER_PREFIX}*"):
        try:
            info = folder.stat()
            if info.st_uid != os.getuid() or time.time() - info.st_mtime < STALE_AFTER:
                continue
            if any(_listened(path) for path in folder.glob("kernel-ipc-*")):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _listened(path: Path) -> bool:
    """Whether a process listens on the Unix socket at `path` (refused or gone: none does)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # busy or slow, but there: keep it
        return True


class LocalKernelManager(AsyncKernelManager):
    """A kernel on this machine, talked to over Unix sockets instead of loopback TCP.

    Unix sockets in a private folder (mode 0700, made per kernel under the temporary folder,
    removed with the kernel, or by a later manager if the kernel died with its own) reach no other
    user and no network, so the kernel has no reason to warn that its traffic is unencrypted;
    papermill takes it as `kernel_manager_class`."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    _private_dir: str | None = None

    @default("client_factory")
    def _client_ready_at_once(self) -> type[ReadyKernelClient]:
        return ReadyKernelClient  # the client nbclient runs cells with: no 0.2 s wait per run

    @default("connection_file")
    def _connection_file_in_private_folder(self) -> str:
        remove_stale_folders(short_temp_root())
        self._private_dir = tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=short_temp_root())
        return os.path.join(self._private_dir, "kernel.json")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    cleanup_resources = _async_cleanup_resources  # the base class binds its own function there

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        # A stopping kernel's process is polled every 0.1 s; killed, it is gone in milliseconds, and
        # `workbench run` waits for its kernels to stop before it exits (0.1 s of each run's end).
        await super()._async_wait(pollinterval=min(pollinterval, 0.01))

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """The kernel's command, loading `kernel_startup` into it."""
        extension = f"--IPKernelApp.extra_extensions={STARTUP_EXTENSION}"
        return super().format_kernel_cmd([*(extra_arguments or []), extension])
