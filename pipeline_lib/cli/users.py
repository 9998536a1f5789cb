"""`workbench users add|list`: the web app's accounts (scopes and password hashes from
`pipeline_lib.contract.users`), written to the db-api's `users` collection."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

users_app = typer.Typer(help="Web app accounts and their scopes.", no_args_is_help=True)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="the username")],
    scope: Annotated[list[str], typer.Option(help="submit, results:read, analyst or admin; repeat for more")],
    password_stdin: Annotated[bool, typer.Option(help="read the password from standard input")] = False,
) -> None:
    """Create or update a web app user (the password is asked for, never an argument)."""
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.contract.users import SCOPES, hash_password
    from pipeline_lib.wire.requests import DbApiCallError

    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        typer.echo(f"error: unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
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
    scopes = sorted(set(scope))
    user = {"scopes": scopes, "password_hash": hash_password(password), "disabled": False}
    with DbApiClient.from_settings() as client:
        try:
            created = client.put_document("users", name, user)
        except DbApiCallError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"{'Created' if created else 'Updated'} user {name!r} with scopes {', '.join(scopes)}.")


@users_app.command("list")
def users_list() -> None:
    """List the web app users and their scopes."""
    from pipeline_lib.client.sync import DbApiClient

    with DbApiClient.from_settings() as client:
        for user in client.list_documents("users", limit=10_000):
            state = " (disabled)" if user.get("disabled") else ""
            typer.echo(f"{user['_id']}: {', '.join(user.get('scopes', []))}{state}")
