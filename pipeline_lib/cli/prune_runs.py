"""`workbench prune-runs`: delete old runs' records and archived notebooks now (`runs.retention`)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import typer

from pipeline_lib.settings import MAX_KEEP_DAYS, get_settings


def prune_runs(
    keep_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_KEEP_DAYS,
            help="keep runs this many days old or newer (default WORKBENCH_RUN_KEEP_DAYS)",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="say what would be deleted, delete nothing")] = False,
) -> None:
    """Delete the records and archived notebooks of runs older than WORKBENCH_RUN_KEEP_DAYS (90),
    keeping each notebook's newest run and newest successful one. The scheduler does this once a day."""
    from pipeline_lib.client.sync import DbApiClient
    from pipeline_lib.runs.retention import mark, prune_runs

    settings = get_settings()
    days = settings.run_keep_days if keep_days is None else keep_days
    if days == 0:
        typer.echo("runs are kept for ever (keep days 0): nothing to prune")
        return
    with DbApiClient.from_settings(settings, fence=None) as client:
        pruned = prune_runs(client, settings.run_archive, days, dt.datetime.now(dt.UTC), dry_run=dry_run)
    if not dry_run:
        mark(settings.run_archive, time.time())
    typer.echo(pruned.summary(days, dry_run))
