"""The live-kernel cap's bookkeeping (`web_app.live_kernels`), on a clock the test moves."""

from __future__ import annotations

from pathlib import Path

from tests.web_app.conftest import settings_for
from tests.wire_servers import free_port
from web_app.live_kernels import LiveKernels
from web_app.main import create_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pages_are_admitted_up_to_the_cap_and_a_closed_kernel_frees_its_slot() -> None:
    live = LiveKernels(2, clock=Clock())
    assert live.admit() and live.admit()
    assert not live.admit() and live.live == 2
    live.connected("a")
    live.connected("b")
    assert not live.admit()
    assert live.disconnected("a")  # its last socket: the caller shuts the kernel down
    assert live.live == 1 and live.admit()


def test_a_kernel_with_two_sockets_holds_one_slot_until_both_close() -> None:
    live = LiveKernels(2, clock=Clock())
    assert live.admit()
    live.connected("a")
    live.connected("a")  # a reconnect while the old socket closes
    assert live.live == 1
    assert not live.disconnected("a") and live.live == 1
    assert live.disconnected("a") and live.live == 0


def test_an_admitted_page_that_never_connects_gives_its_slot_back() -> None:
    clock = Clock()
    live = LiveKernels(1, bind_seconds=120, clock=clock)
    assert live.admit() and not live.admit()
    clock.now += 121
    assert live.live == 0 and live.admit()
    live.give_back()  # its render failed
    assert live.live == 0


def test_a_cap_of_zero_admits_nobody() -> None:
    live = LiveKernels(0)
    assert not live.admit() and live.live == 0


def test_a_socket_without_an_admission_still_counts() -> None:
    live = LiveKernels(1, clock=Clock())
    live.connected("opened-before-a-restart")
    assert live.live == 1 and not live.admit()


def test_the_app_holds_an_unconnected_pages_slot_as_long_as_its_kernel_may_live(tmp_path: Path) -> None:
    """A rendered page that never opens its socket leaves a kernel Voilà culls only once it has
    been idle `voila_idle_seconds` (checked every cull interval); freed after 120 s, its slot let
    about five times the cap of kernels live at once (review)."""
    settings = settings_for(tmp_path, free_port(), voila_idle_seconds=600)
    live = create_app(settings).state.live_kernels
    assert live.bind_seconds >= settings.voila_idle_seconds + settings.voila_cull_interval
    assert settings.voila_cull_interval == 60


def test_a_page_that_named_its_kernel_holds_the_slot_until_forgotten_or_connected() -> None:
    clock = Clock()
    live = LiveKernels(2, bind_seconds=120, clock=clock)
    assert live.admit() and live.admit()
    live.page_kernel("a")
    assert live.unconnected("a") and live.live == 2
    live.forget("a")  # never connected: the proxy shuts its kernel down
    assert not live.unconnected("a") and live.live == 1
    live.page_kernel("b")
    live.connected("b")  # its own slot, not another admission's
    assert not live.unconnected("b") and live.live == 1
    assert live.admit() and live.live == 2  # the admission left unread still counts


def test_a_named_kernel_that_never_connects_still_expires_with_its_admission() -> None:
    clock = Clock()
    live = LiveKernels(1, bind_seconds=120, clock=clock)
    assert live.admit()
    live.page_kernel("a")
    clock.now += 121  # the proxy's check never ran (its shutdown failed, say)
    assert live.live == 0 and not live.unconnected("a")


def test_a_kernel_named_twice_takes_one_slot() -> None:
    live = LiveKernels(2, clock=Clock())
    assert live.admit() and live.admit()
    live.page_kernel("a")
    live.page_kernel("a")
    assert live.live == 2  # the second admission stays pending: held, never freed early


def test_a_socket_being_opened_makes_its_kernel_not_unconnected() -> None:
    live = LiveKernels(1, clock=Clock())
    assert live.admit()
    live.page_kernel("a")
    live.opening("a")
    assert not live.unconnected("a")
    live.opened("a")  # it failed: nobody connected
    assert live.unconnected("a")
    live.opening("a")
    live.opened("a")
    live.connected("a")
    assert not live.unconnected("a") and live.live == 1
