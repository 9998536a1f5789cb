"""A warm kernel (`warm_kernels`) as a run uses it: a `KernelAhead` whose process another process
(the keeper) started, reached through the connection file the keeper wrote.

jupyter_client's manager does everything through its provisioner (is the kernel alive, signal it,
kill it); `AdoptedProvisioner` answers from the process's id and start time, as the process is not
this one's child: the keeper reaps it, so an exited kernel is a zombie until then and counts as gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase

from pipeline_lib.runs import warm_kernels
from pipeline_lib.runs.kernel import ensure_kernel
from pipeline_lib.runs.kernel_ahead import KernelAhead, _AheadKernelManager, environment_code
from pipeline_lib.settings import Settings

log = logging.getLogger(__name__)


class AdoptedProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """The provisioner of a kernel process this process did not start."""

    pid: int | None = None
    started: int | None = None  # the process's start (`warm_kernels.process_start`)

    @property
    def has_process(self) -> bool:
        return self.pid is not None

    async def poll(self) -> int | None:
        if self.pid is None or warm_kernels.process_start(self.pid) != self.started:
            return 0  # its exit code is the keeper's to read
        return None

    async def wait(self) -> int | None:
        while await self.poll() is None:
            await asyncio.sleep(0.01)
        return 0

    async def send_signal(self, signum: int) -> None:
        if await self.poll() is None:
            assert self.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def kill(self, restart: bool = False) -> None:
        if self.pid is not None and self.started is not None:
            warm_kernels.kill(self.pid, self.started)

    async def terminate(self, restart: bool = False) -> None:
        import signal

        await self.send_signal(signal.SIGTERM)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        raise RuntimeError("a warm kernel is started by its keeper, never by a run")

    async def cleanup(self, restart: bool = False) -> None:
        self.pid = None  # its files are the keeper's to remove


class AdoptedKernelManager(_AheadKernelManager):
    """The manager of the warm kernel described by `info` (its file in `ready/`)."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        super().__init__(kernel_name=ensure_kernel(), connection_file=info["connection_file"])
        self.load_connection_file()
        provisioner = AdoptedProvisioner(parent=self)
        provisioner.pid, provisioner.started = info["pid"], info["process_start"]
        self.provisioner = provisioner


class WarmKernel(KernelAhead):
    """A warm kernel claimed for the next run of `path`."""

    def __init__(self, path: Path, claim: warm_kernels.Claim) -> None:  # no super(): nothing to start
        self.claim = claim
        self._tried = False  # a run tried to take it (after which it is never handed back)
        self._attach(path, claim.info["env"], AdoptedKernelManager(claim.info))

    def take(self, env: Mapping[str, str]) -> _AheadKernelManager | None:
        self._tried = True
        return super().take(env)

    def _take_code(self, env: Mapping[str, str]) -> str:
        return (
            warm_kernels.staleness_code(self.claim.info["started_at"])
            + environment_code(self.env, env)
            + warm_kernels.settings_reset_code(self.path.parent)
        )

    def shut_down(self, *, now: bool = False) -> None:
        """As `KernelAhead.shut_down`; a kernel no run took is handed back to the keeper's ready
        ones instead (it only imported, and nothing of this run reached it)."""
        if not self._tried and not self._down and self.claim.give_back():
            self._down = True
            if self._client is not None:
                self._client.stop_channels()
                self._client = None
            return
        super().shut_down(now=now)

    def _stop(self, now: bool) -> None:
        try:
            super()._stop(now)
        finally:
            self.claim.release()  # the keeper reaps it and starts another


def take_warm(path: Path, settings: Settings, env: Mapping[str, str]) -> WarmKernel | None:
    """A warm kernel for `path`'s next run, if one is ready and can serve a run in `env`."""
    claim = warm_kernels.claim(settings, env)
    if claim is None:
        return None
    try:
        return WarmKernel(path, claim)
    except Exception as exc:
        log.warning("the warm kernel %s could not be reached: %s", claim.path.name, exc)
        claim.release()
        return None
