"""The sign-in guard's counting, on its own (memory storage): whose failures make whom wait.

Failures back off the account from that client and the client itself; the account as a whole
backs off only once many distinct clients fail on it, so one attacker never locks its owner out.
The HTTP behaviour is in test_auth_limits.py and test_signin_lockout.py.
"""

from __future__ import annotations

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


async def test_an_attacker_at_the_longest_wait_leaves_the_owner_from_another_client_free() -> None:
    guard = SignInGuard(MemoryStorage())
    await _fail(guard, "admin", ATTACKER, times=40)  # far past the longest wait
    assert await _waits(guard, "admin", ATTACKER)
    assert not await _waits(guard, "admin", OWNER)


async def test_one_client_failing_on_an_account_counts_once_toward_the_account() -> None:
    guard = SignInGuard(MemoryStorage(), free_per_account_and_client=100, free_clients_per_account=1)
    await _fail(guard, "admin", ATTACKER, times=10)
    assert not await _waits(guard, "admin", OWNER)


async def test_failures_from_more_distinct_clients_than_allowed_back_the_account_off_for_everyone() -> None:
    guard = SignInGuard(MemoryStorage(), free_clients_per_account=3)
    for n in range(4):
        await _fail(guard, "admin", f"203.0.113.{n}")
    assert await _waits(guard, "admin", OWNER)
    assert not await _waits(guard, "reader", OWNER)


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
