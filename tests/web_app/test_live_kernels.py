"""The live-kernel cap's bookkeeping (`web_app.live_kernels`), on a clock the test moves."""

from __future__ import annotations

from pathlib import Path

from tests.web_app.conftest import settings_for
from tests.wire_servers import free_port
from web_app.live_kernels import LiveKernels
from web_app.main import create_app

A = "analyst"  # the account of every page here but the per-account tests'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pages_are_admitted_up_to_the_cap_and_a_closed_kernel_frees_its_slot() -> None:
    live = LiveKernels(2, clock=Clock())
    assert live.admit(A) is None and live.admit(A) is None
    assert live.admit(A) == "busy" and live.live == 2
    live.connected("a", A)
    live.connected("b", A)
    assert live.admit(A) == "busy"
    assert live.disconnected("a")  # its last socket: the caller shuts the kernel down
    assert live.live == 1 and live.admit(A) is None


def test_a_kernel_with_two_sockets_holds_one_slot_until_both_close() -> None:
    live = LiveKernels(2, clock=Clock())
    assert live.admit(A) is None
    live.connected("a", A)
    live.connected("a", A)  # a reconnect while the old socket closes
    assert live.live == 1
    assert not live.disconnected("a") and live.live == 1
    assert live.disconnected("a") and live.live == 0


def test_an_admitted_page_that_never_connects_gives_its_slot_back() -> None:
    clock = Clock()
    live = LiveKernels(1, bind_seconds=120, clock=clock)
    assert live.admit(A) is None and live.admit(A) == "busy"
    clock.now += 121
    assert live.live == 0 and live.admit(A) is None
    live.give_back(A)  # its render failed
    assert live.live == 0


def test_a_cap_of_zero_admits_nobody() -> None:
    live = LiveKernels(0)
    assert live.admit(A) == "busy" and live.live == 0


def test_a_socket_without_an_admission_still_counts() -> None:
    live = LiveKernels(1, clock=Clock())
    live.connected("opened-before-a-restart", A)
    assert live.live == 1 and live.admit(A) == "busy"


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
    assert live.admit(A) is None and live.admit(A) is None
    live.page_kernel("a", A)
    assert live.unconnected("a") and live.live == 2
    live.forget("a")  # never connected: the proxy shuts its kernel down
    assert not live.unconnected("a") and live.live == 1
    live.page_kernel("b", A)
    live.connected("b", A)  # its own slot, not another admission's
    assert not live.unconnected("b") and live.live == 1
    assert live.admit(A) is None and live.live == 2  # the admission left unread still counts


def test_a_named_kernel_that_never_connects_still_expires_with_its_admission() -> None:
    clock = Clock()
    live = LiveKernels(1, bind_seconds=120, clock=clock)
    assert live.admit(A) is None
    live.page_kernel("a", A)
    clock.now += 121  # the proxy's check never ran (its shutdown failed, say)
    assert live.live == 0 and not live.unconnected("a")


def test_a_kernel_named_twice_takes_one_slot() -> None:
    live = LiveKernels(2, clock=Clock())
    assert live.admit(A) is None and live.admit(A) is None
    live.page_kernel("a", A)
    live.page_kernel("a", A)
    assert live.live == 2  # the second admission stays pending: held, never freed early


def test_a_socket_being_opened_makes_its_kernel_not_unconnected() -> None:
    live = LiveKernels(1, clock=Clock())
    assert live.admit(A) is None
    live.page_kernel("a", A)
    live.opening("a")
    assert not live.unconnected("a")
    live.opened("a")  # it failed: nobody connected
    assert live.unconnected("a")
    live.opening("a")
    live.opened("a")
    live.connected("a", A)
    assert not live.unconnected("a") and live.live == 1


def test_one_account_holds_at_most_its_share_and_the_others_still_get_places() -> None:
    clock = Clock()
    live = LiveKernels(4, per_account=2, bind_seconds=120, clock=clock)
    assert live.admit("ann") is None and live.admit("ann") is None
    assert live.admit("ann") == "yours" and live.held("ann") == 2
    assert live.admit("bob") is None and live.admit("bob") is None
    assert live.admit("cy") == "busy"  # the cap comes first
    live.page_kernel("a1", "ann")  # ann's pages name their kernels, one connects
    live.connected("a1", "ann")
    live.page_kernel("a2", "ann")
    live.forget("a2")  # never connected: shut down
    assert live.held("ann") == 1 and live.admit("cy") is None
    assert live.disconnected("a1") and live.held("ann") == 0
    assert live.admit("ann") is None


def test_a_slot_counts_for_the_account_whose_page_started_the_kernel() -> None:
    live = LiveKernels(4, per_account=1, clock=Clock())
    assert live.admit("ann") is None
    live.page_kernel("a", "ann")
    live.connected("a", "bob")  # another analyst's socket to ann's kernel (its id was shared)
    assert live.held("ann") == 1 and live.held("bob") == 0
    assert live.admit("bob") is None  # bob's place is still his
    live.connected("b", "bob")  # bob's page not read (cut off): his oldest admission binds
    assert live.held("bob") == 1 and live.live == 2


def test_an_accounts_pages_take_and_give_back_only_its_own_admissions() -> None:
    clock = Clock()
    live = LiveKernels(3, per_account=2, bind_seconds=120, clock=clock)
    assert live.admit("ann") is None
    clock.now += 10
    assert live.admit("bob") is None and live.admit("ann") is None
    live.page_kernel("b", "bob")  # bob's page names its kernel: bob's admission, not ann's older one
    assert live.held("bob") == 1 and live.held("ann") == 2
    live.give_back("ann")  # ann's newest render failed
    assert live.held("ann") == 1
    clock.now += 115  # ann's remaining (oldest) admission expires first
    assert live.held("ann") == 0 and live.held("bob") == 1


def test_a_kernel_takes_a_page_and_its_reconnect_but_no_third_socket() -> None:
    live = LiveKernels(4, per_account=2, clock=Clock())
    assert live.take_socket("a", "ann") is None  # the page
    assert live.take_socket("a", "ann") is None  # its reconnect, the old socket not closed yet
    assert live.take_socket("a", "ann") == "kernel"
    assert live.take_socket("a", "bob") == "kernel"  # through this process, whoever opens it
    live.give_socket_back("a", "ann")
    assert live.sockets_to("a") == 1 and live.take_socket("a", "bob") is None


def test_one_account_holds_a_page_and_a_reconnect_per_live_page_across_kernels() -> None:
    live = LiveKernels(8, per_account=2, clock=Clock())
    assert live.sockets_per_account == 4
    for kernel_id in ("a", "a", "b", "c"):
        assert live.take_socket(kernel_id, "ann") is None
    assert live.take_socket("d", "ann") == "account"
    assert live.take_socket("d", "bob") is None  # another account's places are its own
    live.give_socket_back("c", "ann")
    assert live.take_socket("d", "ann") is None


def test_a_socket_given_back_leaves_no_count_behind() -> None:
    live = LiveKernels(1, per_account=1, clock=Clock())
    assert live.take_socket("a", "ann") is None
    live.give_socket_back("a", "ann")
    live.give_socket_back("a", "ann")  # given back twice (a bug elsewhere): no place is made up
    assert live.sockets_to("a") == 0
    assert [live.take_socket(k, "ann") for k in ("a", "b", "c")] == [None, None, "account"]


def test_a_kernel_takes_sockets_only_from_the_account_whose_page_started_it() -> None:
    """Another analyst who learnt a kernel's id took its page's two places (the page could not
    reconnect) and could act in a kernel that was not theirs."""
    live = LiveKernels(4, per_account=2, clock=Clock())
    assert live.admit("ann") is None
    live.page_kernel("a", "ann")
    assert live.owner("a") == "ann" and live.take_socket("a", "bob") == "owner"
    assert live.take_socket("a", "ann") is None
    live.connected("a", "ann")
    assert live.take_socket("a", "bob") == "owner" and live.take_socket("a", "ann") is None
    assert live.owner("b") is None and live.take_socket("b", "bob") is None  # not known here: as before


def test_a_kernel_stays_its_owners_until_it_is_known_shut_down() -> None:
    """Between its last socket's close and Voilà's answer to the shut-down (seconds; or never, when
    it fails), another account's socket would have found the kernel ownerless."""
    clock = Clock()
    live = LiveKernels(4, per_account=2, bind_seconds=120, clock=clock)
    live.connected("a", "ann")
    assert live.disconnected("a") and live.live == 0  # the slot is free at once
    assert live.owner("a") == "ann" and live.take_socket("a", "bob") == "owner"
    live.released("a")
    assert live.owner("a") is None
    live.connected("b", "ann")
    live.disconnected("b")  # its shut-down failed: never released
    clock.now += 121
    assert live.owner("b") == "ann" and live.live == 0
    live.admit("bob")  # any bookkeeping expires what is past `bind_seconds`
    assert live.owner("b") is None
