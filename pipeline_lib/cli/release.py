"""`workbench release show|reset`: the disclosure release the process run keeps (docs/privacy.md)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

release_app = typer.Typer(
    help="The published release that disclosure control differences against.", no_args_is_help=True
)


@release_app.command("show")
def release_show() -> None:
    """Say what the kept release holds: cells, documents and when they last published."""
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.process.release_store import UnreadableRelease, previous_release

    with DbApiClient.from_settings() as client:
        try:
            release = previous_release(client)
        except UnreadableRelease as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    if release is None:
        typer.echo("No release yet: the next process run publishes its figures as they are.")
        return
    dates = [c.published_at for c in release.cells.values()] + [
        d.published_at for d in release.documents.values()
    ]
    last = f"; last published {max(dates).astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" if dates else ""
    cells, documents = len(release.cells), len(release.documents)
    typer.echo(
        f"{cells:,} {'cell' if cells == 1 else 'cells'} and {documents:,} whole "
        f"{'document' if documents == 1 else 'documents'}{last}."
    )


@release_app.command("reset")
def release_reset(
    yes: Annotated[
        bool, typer.Option("--yes", help="confirm: the next run publishes without differencing")
    ] = False,
) -> None:
    """Remove the kept release (an unreadable one stops every process run). The next run publishes
    its figures as they are, so they can be differenced against what the public saw before."""
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.contract.collections import RELEASES
    from pipeline_lib.process.publication import discard
    from pipeline_lib.process.release_store import RELEASE_ID

    if not yes:
        typer.echo(
            "error: this lets the next run's figures be differenced against earlier ones; add --yes", err=True
        )
        raise typer.Exit(2)
    with DbApiClient.from_settings() as client:
        deleted = client.delete_ids(RELEASES, [RELEASE_ID])
        unfinished = discard(client, RELEASE_ID)  # its release would count as the kept one
    typer.echo("Release removed." if deleted or unfinished else "There was no release to remove.")
