"""The keeper of the warm kernels (`warm_kernels`): a service of `workbench up` that keeps
`settings.warm_kernels` kernels started, each having imported what the notebooks import, and
replaces each one a run took once that run is done with it.

It starts kernels one at a time and only while no `workbench run` is running (`mark_running`): a
run's cores are the run's, and the kernels it took are replaced after it, while the system is
idle. Stopped, it kills its ready kernels (they only imported). It does not kill a kernel a run
still holds, but ipykernel ends every kernel whose parent process ends (`JPY_PARENT_PID`), so that
one ends with the keeper too: `workbench up` stops the keeper with the db-api such a run needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline_lib.runs import warm_kernels
from pipeline_lib.runs.kernel_ahead import READY_TIMEOUT_SECONDS, KernelAhead, wait_for_shut_down
from pipeline_lib.settings import Settings, child_environment

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
RETRY_AFTER_FAILURE_SECONDS = 60.0  # a kernel that would not start is not retried in a loop


class Keeper:
    """Keeps `settings.warm_kernels` kernels ready, importing what `notebooks` import and what
    those modules declare they import when they run (none: no notebook to run, no kernel kept)."""

    def __init__(self, settings: Settings, notebooks: Sequence[Path]) -> None:
        self.settings = settings
        self.notebooks = list(notebooks)
        self.env = child_environment(settings)
        self.ready = warm_kernels.ready_dir(settings)
        self.taken = warm_kernels.taken_dir(settings)
        self.new = self.ready.parent / "new"  # written here, then moved into ready/ whole
        self.kernels: dict[str, KernelAhead] = {}  # this keeper's, by file name
        self._failed_at = float("-inf")

    def serve(self, stopping: threading.Event) -> None:
        """Keep the kernels ready until `stopping` is set; then stop the ready ones."""
        for folder in (self.ready, self.taken, self.new):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._clear_leftovers()
        try:
            while not stopping.is_set():
                in_use = self.reap()
                self._retire_dead()
                idle = (
                    in_use == 0
                    and time.monotonic() - self._failed_at > RETRY_AFTER_FAILURE_SECONDS
                    and not warm_kernels.runs_running(self.settings)
                )
                if idle and self.notebooks and len(self._ready_files()) < self.settings.warm_kernels:
                    self._start_one(stopping)
                stopping.wait(POLL_SECONDS)
        finally:
            self._stop_ready()

    def reap(self) -> int:
        """Stop and forget each taken kernel whose run is done with it (its file unlocked); return
        how many runs still hold one."""
        held = stopped = 0
        for path in self._files(self.taken):
            with warm_kernels.held_alone(path) as mine:
                if not mine:
                    held += 1
                    continue
                self._stop(path)
                stopped += 1
        if stopped:
            wait_for_shut_down()  # killed: gone in milliseconds, and no thread piles up
        return held

    def _stop(self, path: Path) -> None:
        """Stop the kernel of `path` (locked by this keeper) and remove its file."""
        kernel = self.kernels.pop(path.name, None)
        if kernel is not None:
            kernel.shut_down(now=True)  # its own manager: the process is reaped, its folder removed
        else:  # a previous keeper's: not this process's child
            with contextlib.suppress(OSError, ValueError, KeyError):
                info = json.loads(path.read_text())
                warm_kernels.kill(info["pid"], info["process_start"])
        path.unlink(missing_ok=True)

    def _retire_dead(self) -> None:
        """Move a ready kernel that died into taken/, for `reap`."""
        for path in self._ready_files():
            kernel = self.kernels.get(path.name)
            if kernel is None or _alive(kernel):
                continue
            with warm_kernels.held_alone(path) as mine, contextlib.suppress(OSError):
                if mine:
                    os.rename(path, self.taken / path.name)
            log.warning("warm kernel %s died; it will be replaced", path.name)

    def _start_one(self, stopping: threading.Event) -> None:
        name = f"{time.time_ns()}.json"
        started_at = time.time()
        try:
            kernel = KernelAhead(self.notebooks[0], self.env, imports_of=self.notebooks, declared=True)
        except Exception as exc:
            self._failed_at = time.monotonic()
            log.warning("could not start a warm kernel: %s", exc)
            return
        try:
            if not _imported(kernel, stopping):
                kernel.shut_down(now=True)
                return
            pid = kernel.manager.provisioner.pid  # type: ignore[union-attr]
            info = {
                "pid": pid,
                "process_start": warm_kernels.process_start(pid),
                "connection_file": kernel.manager.connection_file,
                "env": self.env,
                "python": sys.executable,  # the interpreter of the kernel spec it registered
                "started_at": started_at,
            }
            written = self.new / name
            descriptor = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as stream:
                json.dump(info, stream)
            kernel.release_client()
            self.kernels[name] = kernel
            os.rename(written, self.ready / name)
            log.info("warm kernel %s ready (process %s)", name, pid)
        except Exception as exc:
            self._failed_at = time.monotonic()
            log.warning("a warm kernel failed to get ready: %s", exc)
            self.kernels.pop(name, None)
            kernel.shut_down(now=True)

    def _stop_ready(self) -> None:
        self.reap()  # kernels whose runs ended just before the stop: their files too
        for path in self._ready_files():
            with warm_kernels.held_alone(path) as mine, contextlib.suppress(OSError):
                if mine:  # else a run taking it now keeps it
                    self._stop(path)
        for path in self._files(self.new):
            path.unlink(missing_ok=True)
        wait_for_shut_down()

    def _clear_leftovers(self) -> None:
        """The files of a previous keeper that ended without stopping its kernels (killed)."""
        for path in self._ready_files():
            with contextlib.suppress(OSError):
                os.rename(path, self.taken / path.name)
        self.reap()
        for path in self._files(self.new):
            path.unlink(missing_ok=True)

    def _ready_files(self) -> list[Path]:
        return self._files(self.ready)

    @staticmethod
    def _files(folder: Path) -> list[Path]:
        try:
            return sorted(folder.iterdir())
        except OSError:
            return []


def _alive(kernel: KernelAhead) -> bool:
    from jupyter_core.utils import run_sync

    return bool(run_sync(kernel.manager.is_alive)())


def _imported(kernel: KernelAhead, stopping: threading.Event) -> bool:
    """Wait for the kernel's imports; False if stopped meanwhile. RuntimeError if it died,
    TimeoutError past READY_TIMEOUT_SECONDS."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not kernel.imported(timeout=POLL_SECONDS):
        if stopping.is_set():
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(f"its imports took over {READY_TIMEOUT_SECONDS:.0f} s")
    return True
