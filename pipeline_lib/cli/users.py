"""`workbench users add|list|disable|enable|scopes|remove`: the web app's accounts (scopes and
password hashes from `pipeline_lib.contract.users`), kept in the db-api's `users` collection.

A change holds for the next sign-in at once, and for sessions and tokens already given out within
5 seconds: each web app process rereads an account at most that often (`web_app.accounts`). Every
command but `add` and `list` changes an existing account only, and keeps what it does not change;
two changes of one account at once run one after the other (`_account_changed`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline_lib.contract.collections import USERS

if TYPE_CHECKING:
    from pipeline_lib.client.sync import DbApiClient

users_app = typer.Typer(
    help="Web app accounts: add or update, list, disable, enable, change scopes, remove.",
    no_args_is_help=True,
)


def _reread_seconds() -> str:
    """How long a web app process may still honour an account's old state."""
    from web_app.accounts import TTL_SECONDS

    return f"{TTL_SECONDS:g}"


NameArg = Annotated[str, typer.Argument(help="the username")]
ScopeOpt = Annotated[list[str], typer.Option(help="submit, results:read, analyst or admin; repeat for more")]


def _checked_scopes(scope: list[str]) -> list[str]:
    """The scopes, sorted and without repeats; exit 2 naming any the web app does not know."""
    from pipeline_lib.contract.users import SCOPES

    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        typer.echo(f"error: unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
    return sorted(set(scope))


@contextmanager
def _users_db() -> Iterator[DbApiClient]:
    """The db-api, as the settings say; a call it refuses or cannot answer ends the command with
    the reason (exit 1), not a traceback."""
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.wire.requests import DbApiCallError

    with DbApiClient.from_settings() as client:
        try:
            yield client
        except DbApiCallError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None


# A change of one account holds its lease `user:NAME` from reading the account to writing it, its
# writes fenced by it: two changes at once lost one (a `disable` undone by a `scopes` that had read
# the account before it; a `remove` undone by a change that wrote the account back after it).
ACCOUNT_LEASE_SECONDS = 30.0
ACCOUNT_WAIT_SECONDS = 10.0  # for another change of the same account to end, then give up


@contextmanager
def _account_changed(name: str) -> Iterator[DbApiClient]:
    """The db-api, fenced by the lease on `name`'s account while the `with` lasts; exit 1 when
    another change of it holds the lease past ACCOUNT_WAIT_SECONDS."""
    import os
    import socket
    import time

    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.runs.lease import LeaseKeeper

    with _users_db() as client:
        holder = f"{socket.gethostname()}:{os.getpid()}:users"
        with LeaseKeeper(client, f"user:{name}", holder, ACCOUNT_LEASE_SECONDS) as lease:
            deadline = time.monotonic() + ACCOUNT_WAIT_SECONDS
            while not lease.acquire():
                if time.monotonic() >= deadline:
                    typer.echo(
                        f"error: another change of user {name!r} is under way ({lease.held_by}); "
                        "try again when it is done",
                        err=True,
                    )
                    raise typer.Exit(1)
                time.sleep(0.2)
            with DbApiClient.for_endpoint(client.endpoint, fence=lease.fence) as fenced:
                yield fenced


def _existing(client: DbApiClient, name: str) -> dict[str, Any]:
    """The stored account (without its `_id`); exit 1 if there is none."""
    user = client.get_document(USERS, name)
    if user is None:
        typer.echo(f"error: no user {name!r} (see `workbench users list`)", err=True)
        raise typer.Exit(1)
    return {key: value for key, value in user.items() if key != "_id"}


def _still_disabled(user: dict[str, Any]) -> str:
    return " (still disabled)" if user.get("disabled") else ""


@users_app.command("add")
def users_add(
    name: NameArg,
    scope: ScopeOpt,
    password_stdin: Annotated[bool, typer.Option(help="read the password from standard input")] = False,
) -> None:
    """Create a user, or set an existing user's password and scopes (a disabled user stays disabled).

    The password is asked for, never an argument."""
    from pipeline_lib.contract.users import hash_password

    scopes = _checked_scopes(scope)
    if not 1 <= len(name) <= 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        typer.echo("error: a username is 1-64 letters, digits, '-', '_' or '.'", err=True)
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        typer.echo("error: use a password of at least 8 characters", err=True)
        raise typer.Exit(2)
    password_hash = hash_password(password)
    with _account_changed(name) as client:
        stored = client.get_document(USERS, name)
        user = {k: v for k, v in (stored or {}).items() if k != "_id"}
        user.update(scopes=scopes, password_hash=password_hash, disabled=bool(user.get("disabled")))
        created = client.put_document(USERS, name, user)
    action = "Created" if created else "Updated"
    typer.echo(f"{action} user {name!r} with scopes {', '.join(scopes)}{_still_disabled(user)}.")


@users_app.command("list")
def users_list() -> None:
    """List the web app users and their scopes."""
    with _users_db() as client:
        for user in client.list_documents(USERS, limit=10_000):
            state = " (disabled)" if user.get("disabled") else ""
            typer.echo(f"{user['_id']}: {', '.join(user.get('scopes', []))}{state}")


def _set_disabled(name: str, disabled: bool) -> bool:
    """Store the user's `disabled` flag, keeping the rest; whether it changed."""
    with _account_changed(name) as client:
        user = _existing(client, name)
        if bool(user.get("disabled")) == disabled:
            return False
        client.put_document(USERS, name, {**user, "disabled": disabled})
    return True


@users_app.command("disable")
def users_disable(name: NameArg) -> None:
    """Stop a user from signing in and end their sessions; password and scopes are kept."""
    if not _set_disabled(name, True):
        typer.echo(f"User {name!r} was already disabled.")
        return
    typer.echo(
        f"Disabled user {name!r}: they can no longer sign in, and their open sessions and API tokens "
        f"stop working within {_reread_seconds()} seconds. `workbench users enable {name}` undoes it."
    )


@users_app.command("enable")
def users_enable(name: NameArg) -> None:
    """Let a disabled user sign in again, with the password and scopes they had."""
    if not _set_disabled(name, False):
        typer.echo(f"User {name!r} was already enabled.")
        return
    typer.echo(f"Enabled user {name!r}: they can sign in again with their password.")


@users_app.command("scopes")
def users_scopes(name: NameArg, scope: ScopeOpt) -> None:
    """Replace a user's scopes; the password and the disabled flag are kept."""
    scopes = _checked_scopes(scope)
    with _account_changed(name) as client:
        user = _existing(client, name)
        before = user.get("scopes", [])
        user["scopes"] = scopes
        client.put_document(USERS, name, user)
    lost = sorted(set(before) - set(scopes))
    typer.echo(f"User {name!r} now has scopes {', '.join(scopes)}{_still_disabled(user)}.")
    if lost:
        typer.echo(
            f"Scopes taken away ({', '.join(lost)}) stop being granted to open sessions and API tokens "
            f"within {_reread_seconds()} seconds."
        )


@users_app.command("remove")
def users_remove(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="remove without asking")] = False,
) -> None:
    """Delete a user; their sessions and API tokens stop working. Asks first unless --yes."""
    with _users_db() as client:
        _existing(client, name)
    # Asked before the account is held: a person may take their time to answer.
    if not yes and not typer.confirm(f"Remove user {name!r}? This cannot be undone", default=False):
        typer.echo(f"Nothing removed: user {name!r} is kept.", err=True)
        raise typer.Exit(1)
    with _account_changed(name) as client:
        if client.delete_ids(USERS, [name]) == 0:
            typer.echo(f"error: no user {name!r} (removed meanwhile?)", err=True)
            raise typer.Exit(1)
    typer.echo(
        f"Removed user {name!r}: they can no longer sign in, and their open sessions and API tokens "
        f"stop working within {_reread_seconds()} seconds."
    )
