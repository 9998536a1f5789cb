"""A live page through the proxy (`web_app.page_watch`): reading the kernel id a page names as it
streams, and the check of a page sent that has not connected. Pure logic, with stand-ins for
Voilà's answers; the whole path, with a real Voilà, is in test_live_dashboards.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from limits.errors import StorageError
from limits.storage import MemoryStorage

from web_app.kernel_owners import KernelOwners
from web_app.live_kernels import LiveKernels
from web_app.page_watch import SCAN_BYTES, KernelIdReader, PageWatch

KERNEL = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
OTHER = "11111111-2222-4333-8444-555555555555"
CONFIG = (
    '<script id="jupyter-config-data" type="application/json">\n'
    f'{{"baseUrl": "/", "kernelId": "{KERNEL}", "theme": "light"}}\n</script>'
)


def _read(page: bytes, size: int) -> list[str]:
    reader = KernelIdReader()
    found = [reader.feed(page[i : i + size]) for i in range(0, len(page), size)]
    return [f for f in found if f]


def test_the_id_is_found_whole_however_the_page_is_cut() -> None:
    page = ("<html><head>" + "x" * 5000 + CONFIG + "</head><body>" + "y" * 3000).encode()
    for size in (1, 7, 64, 4096, len(page)):
        assert _read(page, size) == [KERNEL], size


def test_only_the_configuration_counts() -> None:
    """A kernel id written before the configuration (in a title, say) or in a page's body is not
    the page's kernel; a configuration that is not JSON names none."""
    before = f'<title>"kernelId": "{OTHER}"</title>'.encode()
    assert _read(before + CONFIG.encode() + f'"kernelId": "{OTHER}"'.encode(), 10) == [KERNEL]
    broken = CONFIG.replace('"theme"', "theme").encode()
    assert _read(broken, 10) == []
    forged = CONFIG.replace(KERNEL, "../../shutdown/x").encode()
    assert _read(forged, 10) == []


def test_only_the_pages_first_mebibyte_is_searched() -> None:
    reader = KernelIdReader()
    assert reader.feed(b"z" * SCAN_BYTES) is None
    assert reader.feed(CONFIG.encode()) is None and reader.kernel_id is None
    unfinished = KernelIdReader()  # a configuration that does not end within it
    assert unfinished.feed(CONFIG.encode()[:60] + b" " * SCAN_BYTES + b"</script>") is None


class Voila:
    """Stand-in answers: sockets Voilà counts, and whether a shutdown worked."""

    def __init__(self, sockets: int | None, shuts_down: bool = True) -> None:
        self.sockets, self.shuts_down, self.shut = sockets, shuts_down, []

    async def connections(self, kernel_id: str) -> int | None:
        return self.sockets

    async def shut_down(self, kernel_id: str) -> bool:
        self.shut.append(kernel_id)
        return self.shuts_down


def _checked(voila: Voila, opening: bool = False) -> LiveKernels:
    live = LiveKernels(2)
    assert live.admit("analyst") is None
    live.page_kernel(KERNEL, "analyst")
    if opening:
        live.opening(KERNEL)
    asyncio.run(PageWatch(live, voila.connections, voila.shut_down, 0)._check(KERNEL))
    return live


def test_an_unconnected_page_has_its_kernel_shut_down_and_its_slot_freed() -> None:
    voila = Voila(sockets=0)
    assert _checked(voila).live == 0 and voila.shut == [KERNEL]


def test_a_page_connected_through_another_web_process_keeps_its_kernel() -> None:
    voila = Voila(sockets=1)
    assert _checked(voila).live == 0 and voila.shut == []  # the other process counts it


def test_without_voilas_answer_or_a_shutdown_the_slot_stays_held() -> None:
    assert _checked(Voila(sockets=None)).live == 1
    failing = Voila(sockets=0, shuts_down=False)
    assert _checked(failing).live == 1 and failing.shut == [KERNEL]


def test_a_socket_being_opened_keeps_the_kernel() -> None:
    voila = Voila(sockets=0)
    assert _checked(voila, opening=True).live == 1 and voila.shut == []


class FailingStorage(MemoryStorage):
    """The shared storage not answering (as `limits` reports it)."""

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        raise StorageError(ConnectionError("no answer"))


def _relayed(owners: KernelOwners) -> tuple[list[bytes], LiveKernels]:
    live = LiveKernels(2)
    assert live.admit("analyst") is None
    watch = PageWatch(live, Voila(sockets=1).connections, Voila(sockets=1).shut_down, 60, owners)

    async def page() -> AsyncIterator[bytes]:
        for piece in (b"<html><head>", CONFIG.encode(), b"</head><body>"):
            yield piece

    async def read() -> list[bytes]:
        pieces = [piece async for piece in watch.relay(page(), "analyst")]
        await watch.close()
        return pieces

    return asyncio.run(read()), live


def test_a_pages_kernel_is_recorded_as_its_accounts_for_the_other_processes() -> None:
    owners = KernelOwners(MemoryStorage(), 60)
    pieces, live = _relayed(owners)
    assert b"".join(pieces).count(KERNEL.encode()) == 1 and live.owner(KERNEL) == "analyst"
    assert asyncio.run(owners.started(KERNEL, "analyst"))
    assert not asyncio.run(owners.started(KERNEL, "other")) and not asyncio.run(
        owners.started(OTHER, "analyst")
    )


def test_a_page_whose_kernel_cannot_be_recorded_is_still_sent(caplog: pytest.LogCaptureFixture) -> None:
    """This process knows the kernel as the page's still; the others will refuse it."""
    pieces, live = _relayed(KernelOwners(FailingStorage(), 60))
    assert b"".join(pieces).endswith(b"</head><body>") and live.owner(KERNEL) == "analyst"
    assert "not recorded" in caplog.text


def test_a_kernel_two_pages_named_is_nobodys() -> None:
    """Two web processes each sent a page naming one kernel (a preheated one handed out twice):
    recorded for both accounts, both could use it through any process."""
    owners = KernelOwners(MemoryStorage(), 60)
    asyncio.run(owners.record(KERNEL, "analyst"))
    assert asyncio.run(owners.started(KERNEL, "analyst"))
    asyncio.run(owners.record(KERNEL, "other"))
    assert not asyncio.run(owners.started(KERNEL, "analyst")) and not asyncio.run(
        owners.started(KERNEL, "other")
    )


def test_a_page_naming_a_kernel_this_process_knows_already_records_nothing() -> None:
    owners = KernelOwners(MemoryStorage(), 60)
    live = LiveKernels(2)
    assert live.admit("analyst") is None and live.admit("other") is None
    assert live.page_kernel(KERNEL, "analyst")
    watch = PageWatch(live, Voila(sockets=1).connections, Voila(sockets=1).shut_down, 60, owners)

    async def page() -> AsyncIterator[bytes]:
        yield CONFIG.encode()

    async def read() -> None:
        assert [piece async for piece in watch.relay(page(), "other")] == [CONFIG.encode()]
        await watch.close()

    asyncio.run(read())
    assert not asyncio.run(owners.started(KERNEL, "other")) and live.owner(KERNEL) == "analyst"
