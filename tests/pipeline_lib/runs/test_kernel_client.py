"""The client runs drive their kernel with: ready once the kernel answered, on a real kernel."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pipeline_lib.runs.kernel import LocalKernelManager, ensure_kernel
from pipeline_lib.runs.kernel_client import ReadyKernelClient

KEEPS_PRINTING = (
    "import threading, time\n"
    "def _chatter():\n"
    "    while True:\n"
    "        print('tick', flush=True)\n"
    "        time.sleep(0.02)\n"
    "threading.Thread(target=_chatter, daemon=True).start()\n"
)


@pytest_asyncio.fixture
async def manager() -> AsyncIterator[LocalKernelManager]:
    started = LocalKernelManager(kernel_name=ensure_kernel())
    await started.start_kernel()
    try:
        yield started
    finally:
        await started.shutdown_kernel(now=True)


async def _output_of(client: ReadyKernelClient, code: str) -> str:
    request = client.execute(code)
    printed = []
    while True:
        message = await client.get_iopub_msg(timeout=30)
        if message["parent_header"].get("msg_id") != request:
            continue
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return "".join(printed)


def test_the_runs_kernel_manager_hands_out_the_ready_client() -> None:
    assert LocalKernelManager(kernel_name=ensure_kernel()).client_factory is ReadyKernelClient


@pytest.mark.asyncio
async def test_a_kernel_that_keeps_printing_is_ready_and_its_first_cell_seen_whole(
    manager: LocalKernelManager,
) -> None:
    # jupyter_client's wait reads IOPub until it has been quiet for 0.2 s: never, here (and 0.2 s
    # per run otherwise). The first cell's output after the wait must all arrive.
    first = manager.client()
    first.start_channels()
    await first.wait_for_ready(timeout=60)
    await _output_of(first, KEEPS_PRINTING)
    first.stop_channels()

    client = manager.client()
    client.start_channels()
    try:
        await asyncio.wait_for(client.wait_for_ready(timeout=30), 45)
        # The kernel tags the thread's ticks with the request it is running: the cell's get some.
        printed = (await _output_of(client, "print('first cell')")).splitlines()
        assert [line for line in printed if line != "tick"] == ["first cell"]
        assert not client.hb_channel.is_alive(), "a heartbeat thread nothing reads"
    finally:
        client.stop_channels()


@pytest.mark.asyncio
async def test_a_dead_kernel_is_an_error_not_a_wait(manager: LocalKernelManager) -> None:
    await manager.signal_kernel(signal.SIGKILL)
    while await manager.is_alive():
        await asyncio.sleep(0.05)
    client = manager.client()
    client.start_channels()
    try:
        with pytest.raises(RuntimeError, match="died"):
            await asyncio.wait_for(client.wait_for_ready(timeout=30), 45)
    finally:
        client.stop_channels()
