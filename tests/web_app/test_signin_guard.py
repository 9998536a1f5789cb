"""The sign-in guard's counting, on its own (memory storage): whose failures make whom wait.

Failures back off the account from that client, the client itself, and the account as a whole,
except for clients that signed in to it lately: an attacker never locks its owner out of the
address they use, and guesses spread over many clients are as slow as one client's.
The HTTP behaviour is in test_auth_limits.py and test_signin_lockout.py.
"""

from __future__ import annotations

import asyncio

import pytest
from limits.storage import MemoryStorage

from web_app.signin_guard import SignInGuard, SignInRefused

ATTACKER, OWNER = "203.0.113.9", "198.51.100.7"


async def _fail(guard: SignInGuard, account: str, client: str, times: int = 1) -> None:
    """Failures recorded as if each had been let through (a refused attempt records nothing)."""
    for _ in range(times):
        await guard.record(account, client, succeeded=False)


async def _waits(guard: SignInGuard, account: str, client: str) -> bool:
    try:
        await guard.check(account, client)
    except SignInRefused as refused:
        assert refused.status == 429 and refused.retry_after >= 1
        return True
    return False


async def test_an_attacker_at_the_longest_wait_leaves_the_owner_at_a_known_address_free() -> None:
    guard = SignInGuard(MemoryStorage())
    await guard.record("admin", OWNER, succeeded=True)  # the owner signed in from here before
    await _fail(guard, "admin", ATTACKER, times=40)  # far past the longest wait
    assert await _waits(guard, "admin", ATTACKER)
    assert not await _waits(guard, "admin", OWNER)


async def test_guesses_spread_over_many_clients_back_the_account_off_as_one_clients_would() -> None:
    """Counting each client once let 20 clients guess 20 times as fast as one (review)."""
    guard = SignInGuard(MemoryStorage(), free_per_account=20)
    for n in range(21):  # one guess each from 21 addresses (a /56 holds 256 /64s)
        await _fail(guard, "admin", f"2001:db8:0:{n:x}::/64")
    assert await _waits(guard, "admin", "2001:db8:0:ff::/64")  # a fresh one waits too
    assert not await _waits(guard, "reader", "2001:db8:0:ff::/64")


async def test_during_an_attack_the_owner_waits_at_an_address_never_signed_in_from() -> None:
    guard = SignInGuard(MemoryStorage(), free_per_account=3)
    await guard.record("admin", OWNER, succeeded=True)
    await _fail(guard, "admin", ATTACKER, times=4)
    assert not await _waits(guard, "admin", OWNER)
    assert await _waits(guard, "admin", "192.0.2.44")  # the owner travelling: the documented cost


async def test_a_known_address_is_forgotten_after_known_for() -> None:
    guard = SignInGuard(MemoryStorage(), free_per_account=1, known_for=1)
    await guard.record("admin", OWNER, succeeded=True)
    await _fail(guard, "admin", ATTACKER, times=12)  # a wait far longer than the test
    assert not await _waits(guard, "admin", OWNER)
    await asyncio.sleep(1.5)
    assert await _waits(guard, "admin", OWNER)


async def test_the_owners_success_does_not_forgive_the_attacker() -> None:
    guard = SignInGuard(MemoryStorage(), free_per_account_and_client=0)
    await _fail(guard, "admin", ATTACKER)
    await guard.record("admin", OWNER, succeeded=True)
    assert await _waits(guard, "admin", ATTACKER)


async def test_a_success_forgets_that_clients_failures_on_that_account() -> None:
    guard = SignInGuard(MemoryStorage(), free_per_account_and_client=1)
    await _fail(guard, "rita", OWNER)
    await guard.record("rita", OWNER, succeeded=True)
    await _fail(guard, "rita", OWNER)  # would be the second failure, past the free one
    assert not await _waits(guard, "rita", OWNER)


async def test_a_success_does_not_forgive_the_clients_failures_on_other_accounts() -> None:
    guard = SignInGuard(MemoryStorage(), free_per_client=2)
    await _fail(guard, "user1", ATTACKER)
    await _fail(guard, "user2", ATTACKER)
    await guard.record("rita", ATTACKER, succeeded=True)  # one known password buys no more guesses
    await _fail(guard, "user3", ATTACKER)
    assert await _waits(guard, "user4", ATTACKER)


@pytest.mark.parametrize("max_wait", [2, 900])
async def test_the_wait_never_exceeds_max_wait(max_wait: int) -> None:
    guard = SignInGuard(MemoryStorage(), max_wait=max_wait)
    await _fail(guard, "admin", ATTACKER, times=40)
    with pytest.raises(SignInRefused) as refused:
        await guard.check("admin", ATTACKER)
    assert 1 <= refused.value.retry_after <= max_wait
