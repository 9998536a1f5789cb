"""The `demo` service account: how `workbench demo` signs in on a single machine.

Each run gives the account a fresh random password through the db-api (the same way
`workbench users add` writes users), signs in over HTTP with it, and disables the account when
done. The password is never shown or stored, so nothing is left that someone could log in with.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline_lib.client.sync import DbApiCallError, DbApiClient
from pipeline_lib.settings import Settings

log = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_SCOPES = ["admin", "submit"]


def _account(password_hash: str, *, disabled: bool) -> dict:
    return {"scopes": DEMO_SCOPES, "password_hash": password_hash, "disabled": disabled}


def enable_demo_account(settings: Settings) -> str:
    """Creates or refreshes the account with a new random password, and returns the password.
    Raises `DbApiCallError` if the db-api cannot be reached or refuses the token."""
    from pipeline_lib.contract.users import hash_password  # argon2: only needed here

    password = secrets.token_urlsafe(24)
    with DbApiClient.from_settings(settings, timeout=10) as client:
        client.put_document("users", DEMO_USER, _account(hash_password(password), disabled=False))
    return password


def disable_demo_account(settings: Settings) -> None:
    """Tokens already issued stay valid until they expire; new sign-ins are refused."""
    with DbApiClient.from_settings(settings, timeout=10) as client:
        current = client.get_document("users", DEMO_USER)
        if current is not None:
            client.put_document("users", DEMO_USER, _account(current.get("password_hash", ""), disabled=True))


@contextmanager
def demo_account(settings: Settings) -> Iterator[str]:
    """The account enabled for the block, with its password; disabled afterwards, whatever happens."""
    password = enable_demo_account(settings)
    try:
        yield password
    finally:
        try:
            disable_demo_account(settings)
        except DbApiCallError as exc:
            log.warning("could not disable the demo account", extra={"error": str(exc)})
